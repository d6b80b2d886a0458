import time, copy, json, contextlib, io, numpy as np
from pathlib import Path
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
import faster_coco_eval
from faster_coco_eval import COCO as FCOCO, COCOeval_faster
from ftpdet.data.synth import synthesize_once
d = Path("runs/speed_probes/evdata"); synthesize_once(d, seed=0, num_train=8, num_val=400, image_size=128)
gt = json.loads((d/"annotations/instances_val.json").read_text())
rng = np.random.default_rng(0)
dets = []
for a in gt["annotations"]:
    for k in range(3):
        x,y,w,h = a["bbox"]; j = rng.normal(0, 2, 4)
        dets.append({"image_id": a["image_id"], "category_id": a["category_id"], "bbox": [x+j[0], y+j[1], max(1,w+j[2]), max(1,h+j[3])], "score": float(rng.random())})
for img in gt["images"]:
    for k in range(80):
        dets.append({"image_id": img["id"], "category_id": gt["categories"][rng.integers(len(gt["categories"]))]["id"], "bbox": list(rng.random(4)*60+1), "score": float(rng.random()*0.3)})
print(len(dets), "dets")
def pyc():
    c = COCO(); c.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        c.createIndex(); dt = c.loadRes(copy.deepcopy(dets)); e = COCOeval(c, dt, "bbox"); e.evaluate(); e.accumulate(); e.summarize()
    return e.stats[:6]
def fast():
    c = FCOCO(copy.deepcopy(gt))
    with contextlib.redirect_stdout(io.StringIO()):
        dt = c.loadRes(copy.deepcopy(dets)); e = COCOeval_faster(c, dt, "bbox", print_function=print); e.evaluate(); e.accumulate(); e.summarize()
    return e.stats[:6]
for f in (pyc, fast, pyc, fast):
    t = time.perf_counter(); s = f(); print(f.__name__, f"{time.perf_counter()-t:.2f} s", np.round(s, 5))
