import time, torch
from pathlib import Path
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.models.detector import build_detector, freeze
from _data import probe_data  # noqa: E402 (this folder's helper)
data = probe_data()

ds = CocoDetection(data/"annotations/instances_train.json", data/"train", 128, train=True, cache_images=True)
imgs, tg = collate([ds[i] for i in range(16)])
def tm(fn, n=10):
    fn(); t0=time.perf_counter()
    for _ in range(n): fn()
    return 1000*(time.perf_counter()-t0)/n
t = freeze(build_detector(load_config("bench_teacher", []).model, ds.num_classes))
from ftpdet.engine.onnx_teacher import OnnxTeacher
runner = OnnxTeacher(t, 128, "runs/speed_probes/teacher.onnx")
def bf():
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16): return t(imgs)
for r in range(4):
    print("ort fp32", round(tm(lambda: runner(imgs)),1), "torch bf16", round(tm(bf),1), flush=True)
