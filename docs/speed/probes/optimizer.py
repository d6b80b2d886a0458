import time, torch
from ftpdet.config import load_config
from ftpdet.models.detector import build_detector
from ftpdet.engine.step import build_optimizer
cfg = load_config("demo_student", [])
for kw in ({}, {"foreach": True}, {"fused": True}):
    m = build_detector(cfg.model, 10)
    for p in m.parameters(): p.grad = torch.randn_like(p)
    decay=[p for p in m.parameters() if p.ndim>1]; nd=[p for p in m.parameters() if p.ndim<=1]
    opt = torch.optim.AdamW([{"params":decay,"weight_decay":0.05},{"params":nd,"weight_decay":0}], lr=1e-3, **kw)
    opt.step(); t=time.perf_counter()
    for _ in range(50): opt.step()
    print(kw, 1000*(time.perf_counter()-t)/50, "ms", sum(p.numel() for p in m.parameters()), len(list(m.parameters())))
