"""What each method computes on a batch that mixes labeled and unlabeled images, value and gradient.

The models run in eval mode, so an image's outputs depend on that image alone (BatchNorm on running statistics) and a
gradient with respect to the input images says which images a term reads.
- The task loss: the labeled images' own loss, and no gradient reaches an unlabeled image.
- Each method on an unlabeled image computes what it computes on a labeled image whose labels are the teacher's
  detections above `distill.unlabeled_score_thr` (the stand-in of docs/distillation.md), FTPD's DLT quality aside:
  there it is the teacher's score at every location.
- `pseudo`: GFL's loss on the unlabeled images with the teacher's detections as labels, and no gradient to a
  labeled image.
"""

import pytest
import torch

from ftpdet.checkpoint import load_model
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate, join_batches
from ftpdet.data.transforms import Resize
from ftpdet.data.unlabeled import UnlabeledImages, load_unlabeled
from ftpdet.engine.step import Trainee
from ftpdet.methods import build_methods
from ftpdet.methods.base import StepContext
from ftpdet.methods.ftpd import teacher_quality
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import build_detector, flatten_levels
from ftpdet.models.pseudo_labels import teacher_boxes
from ftpdet.sections import LossConfig, ModelConfig

LABELED, UNLABELED = [0, 1], [2, 3]
STUDENT = ModelConfig(backbone="mobilenet_v3_small", width_mult=0.5, fpn_channels=32, head_channels=32, num_convs=1)


@pytest.fixture(scope="module")
def mixed(tiny_data, teacher_ckpt):
    """(images (4, 3, 64, 64) float, targets: 2 labeled then 2 unlabeled, the same targets with the teacher's
    detections given as labels, teacher, score threshold)."""
    lab = CocoDetection(tiny_data / "annotations" / "instances_train.json", tiny_data / "train", 64)
    records, _ = load_unlabeled(tiny_data / "unlabeled")
    unl = UnlabeledImages(records, Resize(64), seed=0, hflip=0, photometric=False)
    images, targets = join_batches(collate([lab[0], lab[1]]), collate([unl[(0, 0)], unl[(1, 1)]]))
    teacher = load_model(teacher_ckpt)[0]
    with torch.no_grad():
        t_out = teacher(images)
        scores = flatten_levels(t_out["cls_logits"]).sigmoid()[UNLABELED]
    thr = 0.5 * scores.max().item()  # the tiny teacher is weak: a threshold that leaves it a few boxes
    found = teacher_boxes(teacher, t_out, UNLABELED, (64, 64), thr)
    assert all(len(d["boxes"]) for d in found), "the test needs teacher boxes on both unlabeled images"
    as_labeled = targets[:2] + [{**targets[i], "boxes": d["boxes"], "labels": d["labels"], "labeled": True}
                                for i, d in zip(UNLABELED, found)]
    return images.float(), targets, as_labeled, teacher, thr


def trainee(teacher, spec, thr, overrides=()):
    torch.manual_seed(0)
    student = build_detector(STUDENT, teacher.num_classes)
    cfg = load_config(None, list(overrides))
    methods = build_methods(spec, cfg.distill, student, teacher) if spec else None
    crit = GFLLoss(LossConfig(), teacher.num_classes, STUDENT.reg_max, 9)
    return Trainee(student, crit, teacher if spec else None, methods, unlabeled_score_thr=thr).eval()


def terms_and_grads(model, images, targets, prefix):
    """The terms starting with `prefix`, and the gradient of their sum with respect to each image (4,)."""
    x = images.clone().requires_grad_()
    terms = {k: v for k, v in model(x, targets).items() if k.startswith(prefix)}
    (grad,) = torch.autograd.grad(sum(terms.values()), x, allow_unused=True)
    return {k: v.detach() for k, v in terms.items()}, grad.abs().flatten(1).sum(1)


def test_the_task_loss_is_the_labeled_images_own(mixed):
    images, targets, _, teacher, thr = mixed
    model = trainee(teacher, "kd", thr)
    terms, grad = terms_and_grads(model, images, targets, "loss_")
    alone, _ = terms_and_grads(trainee(teacher, None, thr), images[LABELED], targets[:2], "loss_")
    assert set(terms) == {"loss_qfl", "loss_dfl", "loss_giou"}
    for k in terms:
        torch.testing.assert_close(terms[k], alone[k], rtol=1e-4, atol=1e-6)
    assert (grad[LABELED] > 0).all() and (grad[UNLABELED] == 0).all()


@pytest.mark.parametrize("spec,overrides", [
    ("kd", ()), ("pkd", ()), ("ld", ()), ("crosskd", ()), ("bckd", ()),
    ("ftpd", ("distill.ftpd.dlt.mode=entropy",)),  # DLT quality aside: tested below
])
def test_an_unlabeled_image_is_a_labeled_one_whose_labels_are_the_teachers_boxes(mixed, spec, overrides):
    images, targets, as_labeled, teacher, thr = mixed
    model = trainee(teacher, spec, thr, overrides)
    terms, grad = terms_and_grads(model, images, targets, "distill_")
    same, _ = terms_and_grads(model, images, as_labeled, "distill_")
    assert terms and set(terms) == set(same)
    for k in terms:
        torch.testing.assert_close(terms[k], same[k], rtol=1e-5, atol=1e-7)
    assert (grad[UNLABELED] > 0).all(), grad  # every method reads the unlabeled images


def test_ftpd_weighs_an_unlabeled_images_edges_by_the_teachers_score(mixed):
    images, targets, as_labeled, teacher, thr = mixed
    model = trainee(teacher, "ftpd", thr)
    with torch.no_grad():
        t_out, s_out = teacher(images), model.student(images)
    priors = model.student.priors(s_out)
    quality = {}
    for name, tg_list in (("mixed", targets), ("as_labeled", as_labeled)):
        filled = model.with_teacher_boxes(tg_list, t_out, [i for i, t in enumerate(tg_list) if not t.get("labeled", True)],
                                          (64, 64)) if name == "mixed" else tg_list
        _, tg = model.criterion(s_out, priors, filled)
        quality[name] = teacher_quality(StepContext(model.student, teacher, s_out, t_out, priors, tg))
    ctx_conf = flatten_levels(t_out["cls_logits"]).float().sigmoid().amax(-1)
    torch.testing.assert_close(quality["mixed"][UNLABELED], ctx_conf[UNLABELED])
    torch.testing.assert_close(quality["mixed"][LABELED], quality["as_labeled"][LABELED])
    # Read as labels, the teacher's own boxes would make its quality at their positives (nearly) perfect.
    assert not torch.allclose(quality["as_labeled"][UNLABELED], ctx_conf[UNLABELED])


def test_pseudo_is_the_task_loss_on_the_teachers_boxes_of_the_unlabeled_images(mixed):
    images, targets, as_labeled, teacher, thr = mixed
    model = trainee(teacher, "pseudo", thr)
    terms, grad = terms_and_grads(model, images, targets, "distill_pseudo_")
    plain = trainee(teacher, None, thr)
    alone, _ = terms_and_grads(plain, images[UNLABELED], as_labeled[2:], "loss_")
    for k in ("qfl", "dfl", "giou"):
        torch.testing.assert_close(terms[f"distill_pseudo_{k}"], alone[f"loss_{k}"], rtol=1e-4, atol=1e-6)
    assert terms["distill_pseudo_giou"] > 0
    assert (grad[UNLABELED] > 0).all() and (grad[LABELED] == 0).all()


def test_without_unlabeled_images_the_pseudo_terms_are_zeros_that_keep_the_graph(mixed):
    images, targets, _, teacher, thr = mixed
    model = trainee(teacher, "pseudo", thr)
    terms = model(images[LABELED], targets[:2])
    assert all(terms[f"distill_pseudo_{k}"].item() == 0 for k in ("qfl", "dfl", "giou"))
    sum(terms.values()).backward()
    assert all(p.grad is not None for p in model.student.parameters() if p.requires_grad)


def test_teacher_boxes_are_its_inference_output_above_the_threshold(mixed):
    images, _, _, teacher, thr = mixed
    from ftpdet.sections import EvalConfig

    with torch.no_grad():
        found = teacher_boxes(teacher, teacher(images), UNLABELED, (64, 64), thr)
        predicted = teacher.predict(images[UNLABELED], EvalConfig(score_thr=thr))
    for a, b in zip(found, predicted):
        assert (a["scores"] > thr).all()
        for k in ("boxes", "scores", "labels"):
            torch.testing.assert_close(a[k], b[k])
    assert not any(d["boxes"].requires_grad or d["scores"].requires_grad for d in found)
