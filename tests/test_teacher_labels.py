"""FTPD's `pd.assign`: TOOD's task-aligned assignment on hand-built predictions, and GFL's terms for an assignment
against models/criterion.GFLLoss (value and gradient)."""

import pytest
import torch

from ftpdet.models.task_aligned import task_aligned_assign

# Four locations on a line, stride 8: centres x = 4, 12, 20, 28 (y = 4).
POINTS = torch.tensor([[4.0, 4.0], [12.0, 4.0], [20.0, 4.0], [28.0, 4.0]])


def assign(scores, boxes, gt_boxes, gt_labels, topk=13):
    return task_aligned_assign(torch.tensor([scores]), torch.tensor([boxes]), POINTS, torch.tensor([gt_boxes]),
                               torch.tensor([gt_labels]), topk=topk)[0].tolist()


def test_task_aligned_assign_takes_the_topk_aligned_centres_inside_each_box():
    """Box 0 (class 0) spans x 0..16: locations 0 and 1 are inside; location 2's prediction overlaps it but its
    centre is outside. With topk 1 the better-aligned inside location wins: s * u^6 ranks a sure but loose
    prediction (s 0.9, u 0.5: 0.014) below a less sure tight one (s 0.3, u 1: 0.3)."""
    gt = [[0.0, 0.0, 16.0, 8.0]]
    boxes = [[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 16.0, 8.0], [0.0, 0.0, 16.0, 8.0], [24.0, 0.0, 32.0, 8.0]]
    scores = [[0.9, 0.0], [0.3, 0.0], [0.9, 0.0], [0.9, 0.0]]
    assert assign(scores, boxes, gt, [0], topk=1) == [-1, 0, -1, -1]
    assert assign(scores, boxes, gt, [0], topk=13) == [0, 0, -1, -1]  # only inside centres, whatever k


def test_task_aligned_assign_reads_the_boxes_class_and_skips_zero_metrics_and_padding():
    gt = [[0.0, 0.0, 16.0, 8.0], [0.0, 0.0, 0.0, 0.0]]  # the second is padding (label -1)
    boxes = [[0.0, 0.0, 16.0, 8.0]] * 4
    assert assign([[0.0, 0.8]] * 4, boxes, gt, [0, -1]) == [-1, -1, -1, -1]  # no score for class 0: metric 0
    assert assign([[0.0, 0.8]] * 4, boxes, gt, [1, -1]) == [0, 0, -1, -1]


def test_task_aligned_assign_gives_a_shared_location_to_the_box_its_prediction_overlaps_most():
    """Location 1 (x = 12) lies inside both boxes; its predicted box matches box 1 exactly."""
    gt = [[0.0, 0.0, 16.0, 8.0], [8.0, 0.0, 32.0, 8.0]]
    boxes = [[0.0, 0.0, 16.0, 8.0], [8.0, 0.0, 32.0, 8.0], [8.0, 0.0, 32.0, 8.0], [8.0, 0.0, 32.0, 8.0]]
    scores = [[0.9, 0.9]] * 4
    assert assign(scores, boxes, gt, [0, 1]) == [0, 1, 1, 1]


def test_task_aligned_assign_with_no_boxes_is_all_background():
    out = task_aligned_assign(torch.rand(2, 4, 3), torch.rand(2, 4, 4), POINTS, torch.zeros(2, 0, 4),
                              torch.zeros(2, 0, dtype=torch.long))
    assert out.shape == (2, 4) and (out == -1).all()


def test_gfl_terms_on_atss_assignment_equal_the_task_loss_value_and_gradient(teacher_ckpt, tiny_data):
    """teacher_labels.gfl_terms is GFLLoss's arithmetic for another assignment: given ATSS's, it must give GFLLoss's
    three terms and their gradients."""
    from ftpdet.methods.teacher_labels import gfl_terms, padded_gts
    from ftpdet.models.criterion import GFLLoss
    from ftpdet.models.detector import flatten_levels
    from ftpdet.sections import LossConfig
    from tests.test_ftpd import batch_teacher_student

    images, targets, _, student = batch_teacher_student(teacher_ckpt, tiny_data)
    out = student(images)
    priors = student.priors(out)
    terms, tg = GFLLoss(LossConfig(), student.num_classes, student.cfg.reg_max, 9)(out, priors, targets)
    gt_boxes, gt_labels = padded_gts(tg)
    for i, t in enumerate(targets):  # every box got an ATSS location here, so every label is read back
        assert gt_labels[i, : len(t["labels"])].tolist() == t["labels"].tolist()
    gt_index = torch.stack([a.gt_index for a in tg.assign])
    cls, edges = flatten_levels(out["cls_logits"]).float(), flatten_levels(out["edge_logits"]).float()
    mine = gfl_terms(cls, edges, priors, gt_index, gt_boxes, gt_labels, student.cfg.reg_max)
    for name in ("qfl", "dfl", "giou"):
        assert mine[name].item() == pytest.approx(terms[f"loss_{name}"].item(), rel=1e-5), name
        assert mine[name].item() > 0
    params = [p for p in student.parameters() if p.requires_grad]
    ref = torch.autograd.grad(sum(terms.values()), params, retain_graph=True, allow_unused=True)
    got = torch.autograd.grad(sum(mine.values()), params, allow_unused=True)
    for a, b in zip(ref, got):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-7)


def test_ftpd_assign_adds_the_teacher_assigned_task_terms_only_when_on(teacher_ckpt, tiny_data):
    """On by default: three positive terms at GFL's weights that train the student's head; off: no `ta` term, and
    FTPD's other terms the same numbers."""
    from ftpdet.methods.ftpd import FTPD, FTPDConfig
    from tests.test_distill import make_distiller
    from tests.test_ftpd import batch_teacher_student

    images, targets, teacher, student = batch_teacher_student(teacher_ckpt, tiny_data)
    with torch.no_grad():
        _, off = make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.assign=false"]).eval()(images, targets)
    _, on = make_distiller(teacher, student, "ftpd").eval()(images, targets)
    assert not any(k.startswith("distill_ftpd_ta_") for k in off)
    for k in ("qfl", "dfl", "giou"):
        assert on[f"distill_ftpd_ta_{k}"].item() > 0
    for k, v in off.items():
        assert on[k].item() == pytest.approx(v.item(), rel=1e-6), k
    on["distill_ftpd_ta_qfl"].backward()
    assert sum(p.grad.abs().sum() for p in student.head.parameters() if p.grad is not None) > 0
    weights = FTPD.weights(FTPDConfig())
    assert [weights[f"distill_ftpd_ta_{k}"] for k in ("qfl", "dfl", "giou")] == [1.0, 0.25, 2.0]
