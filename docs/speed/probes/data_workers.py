import time, torch, threading, queue
from pathlib import Path
from torch.utils.data import DataLoader
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.models.detector import build_detector
from ftpdet.models.criterion import GFLLoss
from ftpdet.engine.step import Trainee, TrainStep, build_optimizer, weight_table
from ftpdet.models.precision import Precision
from _data import probe_data  # noqa: E402 (this folder's helper)
data = probe_data()

ds = CocoDetection(data/"annotations/instances_train.json", data/"train", 128, train=True, cache_images=True)
cfg = load_config("demo_student", [f"data.root={data}"])
s = build_detector(cfg.model, ds.num_classes)
crit = GFLLoss(cfg.loss, ds.num_classes, 16, 9, True)
tr = Trainee(s, crit, precision=Precision.of(cfg.train))
step = TrainStep(tr.train(), build_optimizer(tr, cfg.train), weight_table(cfg.loss), 10.0)
def prefetch(it, depth=2):
    q = queue.Queue(depth); end = object()
    def work():
        for x in it: q.put(x)
        q.put(end)
    threading.Thread(target=work, daemon=True).start()
    while (x := q.get()) is not end: yield x
loaders = {nw: DataLoader(ds, batch_size=16, shuffle=True, collate_fn=collate, num_workers=nw, persistent_workers=nw>0, drop_last=True) for nw in (0, 1)}
def epoch(kind, n=40):
    dl = loaders[1 if kind == "worker" else 0]
    it = iter(dl)
    if kind == "thread": it = prefetch(it)
    t = time.perf_counter(); k = 0
    for x, tg in it:
        step(x, tg); k += 1
        if k == n: break
    return 1000*(time.perf_counter()-t)/k
epoch("main", 5)
res = {k: [] for k in ("main", "worker", "thread")}
for r in range(3):
    for k in res: res[k].append(epoch(k))
    print({k: round(v[-1], 1) for k, v in res.items()}, flush=True)
