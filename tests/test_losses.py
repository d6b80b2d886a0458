"""QFL, DFL, GIoU and box coding against values computed by hand."""

import math

import pytest
import torch
import torch.nn.functional as F

from ftpdet.losses import bbox2distance, distance2bbox, distribution_focal_loss, giou_loss, integral, quality_focal_loss


def test_qfl_hand_values():
    # logit 0 -> sigma 0.5; target 1: BCE = log 2, modulator |1 - 0.5|^2 = 0.25.
    out = quality_focal_loss(torch.tensor([[0.0]]), torch.tensor([[1.0]]), beta=2.0)
    assert out.item() == pytest.approx(math.log(2) * 0.25, rel=1e-6)
    # logit log 3 -> sigma 0.75; target 0.5: BCE = -(0.5 log .75 + 0.5 log .25), modulator 0.25^2.
    out = quality_focal_loss(torch.tensor([[math.log(3)]]), torch.tensor([[0.5]]), beta=2.0)
    expected = -(0.5 * math.log(0.75) + 0.5 * math.log(0.25)) * 0.0625
    assert out.item() == pytest.approx(expected, rel=1e-6)
    # A perfect prediction of the soft target costs nothing in modulation: |y - sigma| = 0.
    out = quality_focal_loss(torch.tensor([[0.0]]), torch.tensor([[0.5]]))
    assert out.item() == pytest.approx(0.0, abs=1e-7)


def test_qfl_equals_focal_bce_at_beta_zero():
    logits, target = torch.randn(5, 3), torch.rand(5, 3)
    expected = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    assert torch.allclose(quality_focal_loss(logits, target, beta=0.0), expected)


def test_dfl_splits_between_neighbouring_bins():
    logits = torch.randn(1, 17)
    ce = lambda b: F.cross_entropy(logits, torch.tensor([b]))  # noqa: E731
    out = distribution_focal_loss(logits, torch.tensor([2.3]))
    assert out.item() == pytest.approx(0.7 * ce(2).item() + 0.3 * ce(3).item(), rel=1e-5)
    assert distribution_focal_loss(logits, torch.tensor([2.0])).item() == pytest.approx(ce(2).item(), rel=1e-6)
    # Uniform logits over 5 bins: every CE is log 5, whatever the target.
    assert distribution_focal_loss(torch.zeros(1, 5), torch.tensor([1.7])).item() == pytest.approx(math.log(5))


@pytest.mark.parametrize(
    "pred,target,expected,why",
    [
        ([0, 0, 1, 1], [0, 0, 1, 1], 0.0, "identical"),
        ([0, 0, 1, 1], [0, 0, 2, 2], 0.75, "quarter-size box inside: IoU 1/4, hull = target"),
        ([0, 0, 1, 1], [1, 0, 2, 1], 1.0, "side by side: IoU 0, hull = union"),
        ([0, 0, 1, 1], [1, 1, 2, 2], 1.5, "diagonal: IoU 0, hull 4 vs union 2"),
    ],
)
def test_giou_loss(pred, target, expected, why):
    out = giou_loss(torch.tensor([pred], dtype=torch.float), torch.tensor([target], dtype=torch.float))
    assert out.item() == pytest.approx(expected, abs=1e-6), why


def test_integral_is_the_expectation():
    logits = torch.full((1, 4 * 17), -1e4)
    for edge, b in enumerate((0, 3, 8, 16)):
        logits[0, edge * 17 + b] = 0.0  # one-hot at bin b
    assert integral(logits).tolist() == [[0.0, 3.0, 8.0, 16.0]]
    # Uniform over 17 bins: expectation 8.
    assert torch.allclose(integral(torch.zeros(2, 68)), torch.full((2, 4), 8.0))


def test_box_coding_round_trip():
    g = torch.Generator().manual_seed(0)
    points = torch.rand(100, 2, generator=g) * 100
    d = torch.rand(100, 4, generator=g) * 40
    boxes = distance2bbox(points, d)
    assert torch.allclose(bbox2distance(points, boxes), d, atol=1e-5)
    assert torch.allclose(distance2bbox(points, bbox2distance(points, boxes)), boxes, atol=1e-5)
    # Clamping keeps distances in [0, max]: a point outside its box gets 0 on that side.
    clamped = bbox2distance(torch.tensor([[0.0, 0.0]]), torch.tensor([[5.0, 5.0, 50.0, 8.0]]), max_dist=10)
    assert clamped.tolist() == [[0.0, 0.0, 10.0, 8.0]]


def test_aligned_iou_is_the_diagonal_of_box_iou():
    from torchvision.ops import box_iou

    from ftpdet.losses import aligned_iou

    g = torch.Generator().manual_seed(1)
    xy = torch.rand(20, 2, generator=g) * 50
    a = torch.cat([xy, xy + torch.rand(20, 2, generator=g) * 30 + 1], 1)
    b = a + torch.randn(20, 4, generator=g) * 3
    b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    assert torch.allclose(aligned_iou(a, b), box_iou(a, b).diagonal(), atol=1e-6)
    assert aligned_iou(torch.tensor([[0.0, 0, 2, 2]]), torch.tensor([[2.0, 2, 4, 4]])).item() == 0.0
