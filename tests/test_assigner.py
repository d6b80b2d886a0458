"""ATSS on hand-built cases: a 4x4 grid of 8 px cells whose anchors tile a 32 px image exactly.

Location index = row * 4 + col; centre of (row, col) = (8 col + 4, 8 row + 4).
"""

import torch

from ftpdet.models.assigner import atss_assign
from ftpdet.models.detector import make_priors


def grid():
    pri = make_priors([(4, 4)], [8], anchor_scale=1.0, device=torch.device("cpu"))
    return pri.anchors, pri.num_per_level


def positives(res):
    return {i: int(g) for i, g in enumerate(res.gt_index.tolist()) if g >= 0}


def test_central_box_takes_the_four_central_cells():
    anchors, counts = grid()
    # Box [8, 8, 24, 24]: the 4 nearest centres each have IoU 64/256 = 0.25; mean 0.25 + std 0 -> all pass.
    res = atss_assign(anchors, counts, torch.tensor([[8.0, 8.0, 24.0, 24.0]]), topk=4)
    assert positives(res) == {5: 0, 6: 0, 9: 0, 10: 0}
    assert res.iou_thr.tolist() == [0.25]


def test_shared_location_goes_to_the_higher_iou_box():
    anchors, counts = grid()
    # A = [0,0,16,16] gives IoU 0.25 at cells 0, 1, 4, 5; B = [0,0,20,20] gives 0.16 at the same cells.
    gts = torch.tensor([[0.0, 0.0, 16.0, 16.0], [0.0, 0.0, 20.0, 20.0]])
    res = atss_assign(anchors, counts, gts, topk=4)
    assert positives(res) == {0: 0, 1: 0, 4: 0, 5: 0}


def test_adaptive_threshold_keeps_only_the_best_candidates():
    anchors, counts = grid()
    # Box [10,10,26,26] (centre 18,18): candidates 10 (IoU .25), 9 and 6 (48/272), 5 (36/284).
    # mean + std = 0.233, so only cell 10 qualifies.
    res = atss_assign(anchors, counts, torch.tensor([[10.0, 10.0, 26.0, 26.0]]), topk=4)
    assert positives(res) == {10: 0}
    ious = torch.tensor([0.25, 48 / 272, 48 / 272, 36 / 284])
    assert abs(res.iou_thr.item() - (ious.mean() + ious.std()).item()) < 1e-6


def test_centre_must_lie_inside_the_box_unless_the_fallback_rescues_it():
    anchors, counts = grid()
    # [5, 5, 11, 11] lies between the centres at 4 and 12: plain ATSS leaves it without a positive.
    box = torch.tensor([[5.0, 5.0, 11.0, 11.0]])
    assert positives(atss_assign(anchors, counts, box, topk=4, fallback=False)) == {}
    # The fallback gives it the nearest candidate: centre (8, 8) is 5.66 from all four of 0, 1, 4, 5;
    # argsort keeps the first of equals, so one of them, and only one.
    got = positives(atss_assign(anchors, counts, box, topk=4))
    assert len(got) == 1 and set(got) <= {0, 1, 4, 5}


def test_fallback_never_steals_a_claimed_location():
    anchors, counts = grid()
    # The big box claims the four central cells; the 2 px box at the centre has only those as
    # candidates (topk=4), so it stays unassigned instead of taking one.
    gts = torch.tensor([[8.0, 8.0, 24.0, 24.0], [15.0, 15.0, 17.0, 17.0]])
    res = atss_assign(anchors, counts, gts, topk=4)
    assert positives(res) == {5: 0, 6: 0, 9: 0, 10: 0}


def test_no_gt_means_all_background():
    anchors, counts = grid()
    res = atss_assign(anchors, counts, torch.zeros(0, 4), topk=9)
    assert res.gt_index.tolist() == [-1] * 16


def test_topk_is_per_level_and_large_boxes_go_to_the_coarse_level():
    pri = make_priors([(4, 4), (2, 2)], [8, 16], anchor_scale=1.0, device=torch.device("cpu"))
    # Box [5,7,29,31], centre (17,19). Candidates (topk=2 per level): fine cells 10, 9 (IoU 64/576 each),
    # coarse cells 19 (195/637 = .306) and 18 (165/667 = .247); mean + std = .293 keeps only cell 19.
    res = atss_assign(pri.anchors, pri.num_per_level, torch.tensor([[5.0, 7.0, 29.0, 31.0]]), topk=2)
    assert positives(res) == {19: 0}


def test_a_batch_assigns_each_image_as_it_would_be_assigned_alone():
    # Padding the gt lists to the longest and masking must not change any image's result (including the fallback,
    # which runs for all images together), e.g. an image with no box next to images with up to 11.
    from ftpdet.models.assigner import atss_assign_batch

    pri = make_priors([(16, 16), (8, 8), (4, 4)], [8, 16, 32], anchor_scale=4.0, device=torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    gts = []
    for k in (0, 3, 11, 1, 7, 5):
        xy = torch.rand(k, 2, generator=g) * 120
        gts.append(torch.cat([xy, (xy + torch.rand(k, 2, generator=g) * 60 + 2).clamp(max=128)], 1))
    batch = atss_assign_batch(pri.anchors, pri.num_per_level, gts, topk=9)
    rescued = 0
    for b, gt in enumerate(gts):
        alone, got = atss_assign(pri.anchors, pri.num_per_level, gt, topk=9), batch.image(b)
        assert torch.equal(alone.gt_index, got.gt_index)
        assert torch.allclose(alone.iou_thr, got.iou_thr) and torch.allclose(alone.ious, got.ious)
        plain = atss_assign(pri.anchors, pri.num_per_level, gt, topk=9, fallback=False)
        rescued += int((got.gt_index >= 0).sum() - (plain.gt_index >= 0).sum())
    assert rescued > 0  # the fallback took part in this case
    assert batch.gt_index.shape == (6, pri.anchors.shape[0]) and (batch.gt_index[0] == -1).all()
