"""The baselines against their authors' code, on small tensors: value and gradient.

Each reference below is written the way the public repositories compute it, per image and per FPN level with
explicit loops (CrossKD's `kd_quality_focal_loss`, BCKD's `novel_kd_loss` and `loss_score_kd`, LD's
`LDHead.loss_single` with its `get_vlr_region`), independently of the vectorised code under test.
"""

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import box_iou, distance_box_iou, generalized_box_iou

from ftpdet.methods.base import StepContext
from ftpdet.methods.bckd import BCKD, BCKDConfig
from ftpdet.methods.functional import binary_kd
from ftpdet.methods.ld import LD, LDConfig
from ftpdet.models.criterion import build_targets
from ftpdet.models.detector import decode_boxes, make_priors

C, N1, STRIDES, SIZE = 3, 5, [8, 16, 32], 64  # classes, bins (reg_max 4), levels, image side


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def published_modulated_bce(s_logits, t_prob, beta):
    """CrossKD kd_quality_focal_loss / BCKD novel_kd_loss per element: BCE * |sigmoid(s) - t|^beta."""
    return F.binary_cross_entropy_with_logits(s_logits, t_prob, reduction="none") * (s_logits.sigmoid() - t_prob).abs() ** beta


@pytest.mark.parametrize("t,s", [(0.01, 0.02), (0.1, 0.3), (0.5, 0.3)])
def test_binary_kd_is_the_published_modulated_bce_value_and_gradient(t, s):
    ours_s = torch.tensor([logit(s)], requires_grad=True)
    ref_s = torch.tensor([logit(s)], requires_grad=True)
    target = torch.tensor([t])
    ours = binary_kd(ours_s, target, gamma=1.0)
    ref = published_modulated_bce(ref_s, target, 1.0)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-6)
    assert ours_s.grad.item() == pytest.approx(ref_s.grad.item(), rel=1e-5)
    # the old form, (BCE - H(t)) * |dp|, had a 2-8x weaker gradient at these points (issue 11's measurement)
    old_s = torch.tensor([logit(s)], requires_grad=True)
    entropy = F.binary_cross_entropy(target, target)
    ((F.binary_cross_entropy_with_logits(old_s, target) - entropy) * (target - old_s.sigmoid()).abs()).backward()
    assert abs(ref_s.grad.item()) > 1.9 * abs(old_s.grad.item())


def test_binary_kd_without_modulation_has_bce_gradient_and_is_zero_at_the_target():
    s = torch.tensor([-3.0, 0.2, 2.0], requires_grad=True)
    t = torch.tensor([0.05, 0.5, 0.9])
    binary_kd(s, t).sum().backward()
    ref = s.detach().clone().requires_grad_(True)
    F.binary_cross_entropy_with_logits(ref, t, reduction="sum").backward()
    assert torch.allclose(s.grad, ref.grad, atol=1e-6)
    assert binary_kd(torch.logit(t), t).abs().max() < 1e-6


# -- a small step context: random logits on 3 levels of a 64 px image pair, two objects each ---------------------
@pytest.fixture()
def step():
    g = torch.Generator().manual_seed(0)
    priors = make_priors([(SIZE // s, SIZE // s) for s in STRIDES], STRIDES, 4.0, torch.device("cpu"))
    targets = [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 28.0], [20.0, 24.0, 60.0, 62.0]]), "labels": torch.tensor([0, 2])},
               {"boxes": torch.tensor([[10.0, 10.0, 22.0, 40.0], [33.0, 2.0, 63.0, 20.0]]), "labels": torch.tensor([1, 1])}]

    def outputs(scale):
        return {"cls_logits": [torch.randn(2, C, SIZE // s, SIZE // s, generator=g) * scale - 2 for s in STRIDES],
                "edge_logits": [torch.randn(2, 4 * N1, SIZE // s, SIZE // s, generator=g) * scale for s in STRIDES]}

    s_out, t_out = outputs(1.0), outputs(2.0)
    for maps in s_out.values():
        for m in maps:
            m.requires_grad_(True)
    tg = build_targets(priors, targets, C, topk=9)
    assert tg.pos.sum() > 4  # positives on more than one level: the per-level averages are exercised
    student = SimpleNamespace(cfg=SimpleNamespace(reg_max=N1 - 1))
    ctx = StepContext(student, student, s_out, t_out, priors, tg)
    return ctx, targets


def level_slices(priors):
    start = 0
    for count in priors.num_per_level:
        yield slice(start, start + count)
        start += count


def per_image_level(out, key, b, sl):
    """The repository's layout: one image, one level, (HW, channels)."""
    return torch.cat([m[b].flatten(1).T for m in out[key]])[sl]


def grads(value, ctx):
    return torch.autograd.grad(value, ctx.s_out["cls_logits"] + ctx.s_out["edge_logits"], retain_graph=True,
                               allow_unused=True)


def assert_same_value_and_gradient(ours, ref, ctx):
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    for a, b in zip(grads(ours, ctx), grads(ref, ctx)):
        if a is None or b is None:
            assert (a is None or not a.any()) and (b is None or not b.any())
        else:
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-7)


def test_bckd_matches_its_repository(step):
    """novel_kd_loss summed over classes and loss_score_kd (GIoU weighted by max_c |p_t - p_s|), both with
    avg_factor = number of positives."""
    ctx, _ = step
    terms = BCKD(BCKDConfig(), None, None)(ctx)
    num_pos = ctx.targets.pos.sum().float()
    cls, box = 0.0, 0.0
    for b in range(2):
        for sl in level_slices(ctx.priors):
            s_cls, t_cls = per_image_level(ctx.s_out, "cls_logits", b, sl), per_image_level(ctx.t_out, "cls_logits", b, sl)
            cls = cls + published_modulated_bce(s_cls, t_cls.sigmoid(), 1.0).sum()
            w = (t_cls.sigmoid() - s_cls.detach().sigmoid()).abs().max(1)[0]
            s_box = decode_boxes(per_image_level(ctx.s_out, "edge_logits", b, sl)[None], _sub(ctx.priors, sl))[0]
            t_box = decode_boxes(per_image_level(ctx.t_out, "edge_logits", b, sl)[None], _sub(ctx.priors, sl))[0]
            giou = 1 - generalized_box_iou(s_box, t_box).diagonal()
            box = box + (giou * w).sum()
    assert_same_value_and_gradient(terms["distill_bckd_cls"], cls / num_pos, ctx)
    assert_same_value_and_gradient(terms["distill_bckd_box"], box / num_pos, ctx)


def _sub(priors, sl):
    return SimpleNamespace(points=priors.points[sl], strides=priors.strides[sl])


def test_ld_matches_its_repository(step):
    """LDHead.loss_single: loss_ld = sum over positives and edges of w * KL / avg_factor 4; VLR: IoU-weighted, / 16,
    positives not excluded; class KD averaged over each level's positives; the box sums over the repository's 2
    images per GPU, so over B images they are divided by B / 2."""
    ctx, targets = step
    cfg = LDConfig()
    terms = LD(cfg, None, None)(ctx)
    T, Tc = cfg.temperature, cfg.cls_temperature

    def kl_mean(pred, soft, temp):  # knowledge_distillation_kl_div_loss: mean over the last dim, times T^2
        target = F.softmax(soft / temp, dim=1)
        return F.kl_div(F.log_softmax(pred / temp, dim=1), target, reduction="none").mean(1) * temp * temp

    ld, vlr, kd = 0.0, 0.0, 0.0
    for b in range(2):
        gt = targets[b]["boxes"]
        res = ctx.targets.assign[b]
        anchors = ctx.priors.anchors
        diou, iou = distance_box_iou(anchors, gt), box_iou(anchors, gt)
        band = (diou >= 0.25 * res.iou_thr) & (diou < res.iou_thr)
        region = torch.where(band, iou, torch.full_like(iou, -1e8)).max(1)[0]
        region = torch.where(region > -1e8, region, torch.zeros_like(region))  # vlr_region_iou
        for level, sl in enumerate(level_slices(ctx.priors)):
            s_cls = per_image_level(ctx.s_out, "cls_logits", b, sl)
            s_edge = per_image_level(ctx.s_out, "edge_logits", b, sl)
            t_cls, t_edge = per_image_level(ctx.t_out, "cls_logits", b, sl), per_image_level(ctx.t_out, "edge_logits", b, sl)
            pos = ctx.targets.pos[b, sl].nonzero().squeeze(1)
            if len(pos):
                w = s_cls.detach().sigmoid().max(1)[0][pos]
                ld = ld + (kl_mean(s_edge[pos].reshape(-1, N1), t_edge[pos].reshape(-1, N1), T)
                           * w[:, None].expand(-1, 4).reshape(-1)).sum() / 4.0
            remain = (region[sl] > 0).nonzero().squeeze(1)
            if len(remain):
                wv = region[sl][remain]
                vlr = vlr + (kl_mean(s_edge[remain].reshape(-1, N1), t_edge[remain].reshape(-1, N1), T)
                             * wv[:, None].expand(-1, 4).reshape(-1)).sum() / 16.0
    # class KD: per level over the batch's positives (the repository's level tensors hold both images)
    for sl in level_slices(ctx.priors):
        s_cls = torch.cat([per_image_level(ctx.s_out, "cls_logits", b, sl) for b in range(2)])
        t_cls = torch.cat([per_image_level(ctx.t_out, "cls_logits", b, sl) for b in range(2)])
        pos = ctx.targets.pos[:, sl].reshape(-1).nonzero().squeeze(1)
        if len(pos):
            kd = kd + kl_mean(s_cls[pos], t_cls[pos], Tc).sum() / len(pos)
    images_per_gpu = 2 / 2  # this batch holds 2 images, the repository's per-GPU batch
    assert vlr.item() > 0 and ld.item() > 0
    assert_same_value_and_gradient(terms["distill_ld"], ld / images_per_gpu, ctx)
    assert_same_value_and_gradient(terms["distill_ld_vlr"], vlr / images_per_gpu, ctx)
    assert_same_value_and_gradient(terms["distill_ld_cls"], kd, ctx)


def test_ld_box_terms_scale_with_the_batch_as_the_repository_does(step):
    """Four images are two reference GPUs' worth: the per-image scale of the box terms stays the same."""
    ctx, _ = step
    double = StepContext(ctx.student, ctx.teacher, {k: [torch.cat([m, m]) for m in v] for k, v in ctx.s_out.items()},
                         {k: [torch.cat([m, m]) for m in v] for k, v in ctx.t_out.items()}, ctx.priors,
                         SimpleNamespace(pos=torch.cat([ctx.targets.pos] * 2), assign=ctx.targets.assign * 2,
                                         gt_boxes=ctx.targets.gt_boxes * 2))
    one, two = LD(LDConfig(), None, None)(ctx), LD(LDConfig(), None, None)(double)
    for name in ("distill_ld", "distill_ld_vlr", "distill_ld_cls"):
        assert two[name].item() == pytest.approx(one[name].item(), rel=1e-5), name
