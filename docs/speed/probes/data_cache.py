import sys, time, torch
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from ftpdet.data.coco import CocoDetection, collate
print(sys.modules["ftpdet"].__file__)
data = Path(sys.argv[3]) if len(sys.argv) > 3 else Path("runs/speed_probes/data")  # a synth dir (256+ train images)
ds = CocoDetection(data/"annotations/instances_train.json", data/"train", 128, train=True, cache_images=True)
torch.manual_seed(0)
out = [ds[i] for i in range(64)]
torch.save(out, sys.argv[2])
t=time.perf_counter()
for k in range(8): collate([ds[i] for i in range(16*k,16*k+16)])
print("getitem+collate ms/batch", 1000*(time.perf_counter()-t)/8)
