import time, torch, copy, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.models.detector import build_detector, freeze
from _data import probe_data  # noqa: E402 (this folder's helper)
data = probe_data()

ds = CocoDetection(data/"annotations/instances_train.json", data/"train", 128, train=True, cache_images=True)
imgs, tg = collate([ds[i] for i in range(16)])
def tm(fn, n=10):
    fn(); fn(); t0=time.perf_counter()
    for _ in range(n): fn()
    return 1000*(time.perf_counter()-t0)/n
t = freeze(build_detector(load_config("bench_teacher", []).model, ds.num_classes))
class G(torch.nn.Module):
    def __init__(s, m): super().__init__(); s.m = m
    def forward(s, x):
        o = s.m(x); return tuple(o["cls_logits"]) + tuple(o["edge_logits"]) + tuple(o["fpn"])
t0 = time.perf_counter()
with torch.no_grad():
    tr = torch.jit.trace(G(t), imgs)
    fr = torch.jit.optimize_for_inference(torch.jit.freeze(tr.eval()))
    fr(imgs)
print("jit prep s", time.perf_counter()-t0)
with torch.no_grad():
    def bf():
        with torch.autocast("cpu", dtype=torch.bfloat16): return t(imgs)
    for r in range(2):
        print("jit frozen fp32", tm(lambda: fr(imgs)), "eager bf16", tm(bf), "eager fp32", tm(lambda: t(imgs)))
