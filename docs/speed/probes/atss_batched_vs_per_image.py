# compare new batched targets with the old per-image implementation (from git HEAD)
import torch, subprocess, types, sys
from pathlib import Path
src = subprocess.run(["git","show","f052a39:src/ftpdet/models/assigner.py"],capture_output=True,text=True,cwd=str(Path(__file__).resolve().parents[3])).stdout
old = types.ModuleType("old_assigner"); sys.modules["old_assigner"] = old; exec(compile(src, "old", "exec"), old.__dict__)
from ftpdet.models.assigner import atss_assign_batch
from ftpdet.models.detector import make_priors
pri = make_priors([(16,16),(8,8),(4,4)], [8,16,32], anchor_scale=4.0, device=torch.device("cpu"))
g = torch.Generator().manual_seed(0)
mism = 0; total=0
for trial in range(200):
    B = 8
    gts = []
    for b in range(B):
        k = int(torch.randint(0, 12, (1,), generator=g))
        xy = torch.rand(k, 2, generator=g) * 120
        wh = torch.rand(k, 2, generator=g) * 60 + 2
        gts.append(torch.cat([xy, (xy + wh).clamp(max=128)], 1))
    for fb in (True, False):
        new = atss_assign_batch(pri.anchors, pri.num_per_level, gts, 9, fb)
        for b in range(B):
            o = old.atss_assign(pri.anchors, pri.num_per_level, gts[b], 9, fb)
            n = new.image(b)
            total += 1
            if not (torch.equal(o.gt_index, n.gt_index) and torch.allclose(o.iou_thr, n.iou_thr) and torch.allclose(o.ious, n.ious)):
                mism += 1
                if mism < 4: print("mismatch", trial, b, (o.gt_index != n.gt_index).sum().item(), (o.iou_thr - n.iou_thr).abs().max() if o.iou_thr.numel() else 0)
print("mismatches", mism, "of", total)
import time
from ftpdet.models.criterion import build_targets
gts = [torch.cat([xy:=torch.rand(5,2,generator=g)*100, xy+torch.rand(5,2,generator=g)*30+2],1) for _ in range(16)]
tg = [{"boxes": b, "labels": torch.zeros(len(b), dtype=torch.long)} for b in gts]
def tm(f, n=50):
    f(); t=time.perf_counter()
    for _ in range(n): f()
    return 1000*(time.perf_counter()-t)/n
print("old per-image loop", tm(lambda: [old.atss_assign(pri.anchors, pri.num_per_level, b, 9, True) for b in gts]))
print("batched assign", tm(lambda: atss_assign_batch(pri.anchors, pri.num_per_level, gts, 9, True)))
print("build_targets", tm(lambda: build_targets(pri, tg, 10, 9, True)))
