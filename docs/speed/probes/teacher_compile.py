import time, torch, copy
from pathlib import Path
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.models.detector import build_detector, freeze
ds = CocoDetection(data/"annotations/instances_train.json", data/"train", 128, train=True, cache_images=True)
imgs, tg = collate([ds[i] for i in range(16)])
t = freeze(build_detector(load_config("bench_teacher", []).model, ds.num_classes))
def tm(fn, n=10):
    fn(); t0=time.perf_counter()
    for _ in range(n): fn()
    return 1000*(time.perf_counter()-t0)/n
import torch._inductor.config as ic
from _data import probe_data  # noqa: E402 (this folder's helper)
data = probe_data()

ic.freezing = True
for amp in (False, True):
    c = torch.compile(copy.deepcopy(t))
    t0 = time.perf_counter()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        c(imgs)
        print("amp", amp, "warmup s", time.perf_counter()-t0, "compiled ms", tm(lambda: c(imgs)), "eager ms", tm(lambda: t(imgs)), flush=True)
