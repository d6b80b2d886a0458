"""FTPD's parts against the properties their docstrings claim: DLT `sharpness`, CTF `dense`, PD's box term."""

import math

import pytest
import torch

from ftpdet.methods import temperature
from ftpdet.methods.ctf import ctf_loss, dense_ctf, dice_distance
from ftpdet.methods.temperature import dlt_kl, sharpness_temperature

BINS = torch.arange(17, dtype=torch.float32)


def peaked(centre: float, width: float, height: float = 1.0) -> torch.Tensor:
    """(1, 17) edge logits: a Gaussian bump, asymmetric when near an end (so sharpening moves its mean)."""
    return (-(BINS - centre) ** 2 / (2 * width**2) * height)[None]


def expectation(logits: torch.Tensor) -> torch.Tensor:
    """The decoded edge (in bins): what the box is made of."""
    return (logits.softmax(-1) * BINS).sum(-1)


def test_sharpness_temperature_is_one_for_a_flat_edge_and_bounded_for_a_one_hot_one():
    one_hot = torch.full((1, 17), -50.0)
    one_hot[0, 3] = 50.0
    edges = torch.cat([torch.zeros(1, 17), one_hot, peaked(8, 1.0), peaked(8, 3.0)]).requires_grad_(True)
    tau = sharpness_temperature(edges)
    assert tau.shape == (4, 1) and not tau.requires_grad
    assert tau[0].item() == pytest.approx(1.0) and tau[1].item() == pytest.approx(17 ** (1 / 3), rel=1e-4)
    assert 1.0 < tau[3].item() < tau[2].item() < tau[1].item()  # sharper edge, higher temperature
    assert torch.isfinite(dlt_kl(torch.randn(4, 17), edges, "sharpness")).all()


def k_over_tau(z: torch.Tensor, ks: torch.Tensor) -> torch.Tensor:
    """k / tau(k z): the scale the loss compares when the student's logits are the teacher's times k."""
    return torch.stack([k / sharpness_temperature(k * z).squeeze() for k in ks])


def test_sharpness_has_one_zero_the_teachers_own_distribution_while_std_has_a_family():
    ks = torch.exp(torch.linspace(math.log(0.05), math.log(50.0), 300))
    g = torch.Generator().manual_seed(0)
    edges = [peaked(c, w, h) for c, w, h in ((2.0, 0.7, 1.0), (14.5, 2.0, 3.0), (8.0, 0.3, 1.0))]
    edges += [torch.randn(1, 17, generator=g) * s for s in (0.5, 2.0, 6.0)]
    one_peak = torch.zeros(1, 17)
    one_peak[0, 5] = 1.0
    for z in [*edges, one_peak]:
        # z -> z / tau(z) strictly increasing along k z: no other scale of the teacher's logits costs nothing.
        assert (k_over_tau(z, ks).diff() > 0).all()
    for z in edges:
        for k in (0.5, 2.0):
            sharp, std = dlt_kl(k * z, z, "sharpness").item(), dlt_kl(k * z, z, "std").item()
            assert sharp > 0.02 and abs(std) < 0.01 * sharp  # std: any k is a zero (up to float32 rounding)
        assert dlt_kl(z + 3.0, z, "sharpness").item() == pytest.approx(0.0, abs=1e-6)  # an offset is no change


def test_an_exponent_of_one_half_would_give_spurious_zeros(monkeypatch):
    # Why 1/3: with 1/2 the single-peak edge's k / tau(k z) turns back, so two scales give the same target.
    one_peak = torch.zeros(1, 17)
    one_peak[0, 5] = 1.0
    ks = torch.exp(torch.linspace(math.log(0.05), math.log(50.0), 300))
    monkeypatch.setattr(temperature, "SHARPNESS_EXPONENT", 0.5)
    assert (k_over_tau(one_peak, ks).diff() < 0).any()


def fit(student: torch.Tensor, teacher: torch.Tensor, mode: str, steps: int = 400) -> torch.Tensor:
    s = student.clone().requires_grad_(True)
    opt = torch.optim.Adam([s], lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        dlt_kl(s, teacher, mode).sum().backward()
        opt.step()
    return s.detach()


def test_sharpness_transfers_the_decoded_edge_and_std_does_not():
    teacher = torch.cat([peaked(1.5, 1.2, 2.0), peaked(15.0, 2.5, 1.0), peaked(4.0, 0.8, 0.5)])
    start = 2.5 * teacher  # a sharper student: its decoded edges are off the teacher's
    assert (expectation(start) - expectation(teacher)).abs().max() > 0.2
    sharp = fit(start, teacher, "sharpness")
    assert (expectation(sharp) - expectation(teacher)).abs().max() < 0.02
    std = fit(start, teacher, "std")  # already a zero of std's loss: it stays off
    assert (expectation(std) - expectation(teacher)).abs().max() > 0.2


def logits_of(p: torch.Tensor) -> torch.Tensor:
    return torch.log(p) - torch.log1p(-p)


def test_dense_ctf_is_zero_for_a_copy_and_pushes_background_down_where_relation_is_silent():
    g = torch.Generator().manual_seed(0)
    t = torch.randn(2, 40, 5, generator=g) * 2 - 3
    w = t.sigmoid().amax(-1)
    num_pos = torch.tensor(4.0)
    binary, relation = dense_ctf(t.clone(), t, w, num_pos)
    assert binary.item() == pytest.approx(0.0, abs=1e-6) and relation.item() == pytest.approx(0.0, abs=1e-5)
    # A student scoring everything higher by an offset of its logits: Pearson on logits cannot see it.
    s = (t + 3.0).requires_grad_(True)
    assert ctf_loss(s, t, "relation", w).item() == pytest.approx(0.0, abs=1e-4)
    binary, _ = dense_ctf(s, t, w, num_pos)
    assert binary.item() > 1.0
    binary.backward()
    assert (s.grad > 0).all()  # every score, background included, is pushed down


def test_dense_relation_is_offset_and_scale_free_on_probabilities():
    g = torch.Generator().manual_seed(1)
    p_t = torch.rand(1, 30, 6, generator=g) * 0.4 + 0.3
    p_s = torch.rand(1, 30, 6, generator=g) * 0.4 + 0.3
    w = torch.rand(1, 30, generator=g)
    one = torch.tensor(1.0)
    _, base = dense_ctf(logits_of(p_s), logits_of(p_t), w, one)
    _, shifted = dense_ctf(logits_of(p_s + 0.1), logits_of(p_t - 0.05), w, one)  # offsets of either side
    assert shifted.item() == pytest.approx(base.item(), rel=1e-4)
    # Both sides' probabilities squeezed by one factor: every centred vector halves, the distance does not move.
    _, halved = dense_ctf(logits_of(0.25 + 0.5 * p_s), logits_of(0.25 + 0.5 * p_t), w, one)
    assert halved.item() == pytest.approx(base.item(), rel=1e-4)
    a, b = torch.randn(3, 7, generator=g), torch.randn(3, 7, generator=g)
    assert dice_distance(a, a, -1).abs().max() < 1e-6 and (dice_distance(a, b, -1) > 0).all()
    assert dice_distance(a, 0.5 * a, -1).min() > 0.1  # unlike a correlation, a smaller spread is a difference


def test_dense_relation_gradient_stays_bounded_when_the_student_scores_are_all_equal():
    g = torch.Generator().manual_seed(2)
    t = torch.randn(1, 50, 8, generator=g) * 3 - 2
    w = t.sigmoid().amax(-1)
    flat = torch.full((1, 50, 8), -4.6) + torch.randn(1, 50, 8, generator=g) * 1e-4  # as at initialisation
    s_old = flat.clone().requires_grad_(True)
    ctf_loss(s_old, t, "relation", w).backward()
    s_new = flat.clone().requires_grad_(True)
    dense_ctf(s_new, t, w, torch.tensor(1.0))[1].backward()
    assert s_old.grad.abs().max() > 100  # Pearson: 1 / |a|
    assert s_new.grad.abs().max() < 1.0 and s_new.grad.abs().max() > 0


def test_pd_box_term_weighs_the_box_where_teacher_and_student_disagree_on_classes(teacher_ckpt, tiny_data):
    import copy

    from ftpdet.data.coco import CocoDetection, collate
    from tests.test_distill import make_distiller, teacher_model

    ds = CocoDetection(tiny_data / "annotations" / "instances_train.json", tiny_data / "train", 64)
    images, targets = collate([ds[i] for i in range(4)])
    teacher = teacher_model(teacher_ckpt)
    giou = {}
    for part in ("reg_out", "cls_out"):
        student = copy.deepcopy(teacher)
        with torch.no_grad():
            getattr(student.head, part).weight.mul_(1.5)  # other edges (same classes), or other classes (same edges)
        d = make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.box=true"]).eval()
        with torch.no_grad():
            _, terms = d(images, targets)
        giou[part] = terms["distill_ftpd_giou"].item()
    assert giou["reg_out"] == pytest.approx(0.0, abs=1e-6)  # boxes differ, classes agree: weight 0 everywhere
    assert giou["cls_out"] == pytest.approx(0.0, abs=1e-6)  # classes differ, boxes agree: GIoU 0 everywhere
    student = copy.deepcopy(teacher)
    with torch.no_grad():
        student.head.reg_out.weight.mul_(1.5)
        student.head.cls_out.weight.mul_(1.5)
    d = make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.box=true"]).eval()
    with torch.no_grad():
        _, terms = d(images, targets)
    assert terms["distill_ftpd_giou"].item() > 1e-3
    assert "distill_ftpd_giou" in make_distiller(teacher, student, "ftpd").eval()(images, targets)[1]  # the default
    off = make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.box=false"]).eval()
    assert "distill_ftpd_giou" not in off(images, targets)[1]


def batch_teacher_student(teacher_ckpt, tiny_data):
    """Four training images with their targets, the tiny teacher, and a randomly initialised student of its build."""
    from ftpdet.data.coco import CocoDetection, collate
    from ftpdet.models.detector import build_detector
    from tests.test_distill import teacher_model

    ds = CocoDetection(tiny_data / "annotations" / "instances_train.json", tiny_data / "train", 64)
    images, targets = collate([ds[i] for i in range(4)])
    teacher = teacher_model(teacher_ckpt)
    torch.manual_seed(1)
    return images, targets, teacher, build_detector(teacher.cfg, teacher.num_classes)


def test_dense_ctf_relation_term_runs_only_when_weighted(teacher_ckpt, tiny_data):
    """FTPD's default weighs CTF `dense`'s relation term 0: it is then neither computed nor logged, and the binary
    term is the same number either way; with a weight it is there and positive for a student unlike the teacher."""
    from tests.test_distill import make_distiller

    images, targets, teacher, student = batch_teacher_student(teacher_ckpt, tiny_data)
    with torch.no_grad():
        _, default = make_distiller(teacher, student, "ftpd").eval()(images, targets)
        _, weighted = make_distiller(teacher, student, "ftpd", ["distill.ftpd.rel_weight=1"]).eval()(images, targets)
    assert "distill_ftpd_rel" not in default
    assert weighted["distill_ftpd_rel"].item() > 1e-3
    assert default["distill_ftpd_cls"].item() == pytest.approx(weighted["distill_ftpd_cls"].item(), rel=1e-6)
    assert default["distill_ftpd_cls"].item() > 0


def test_pd_cross_layer_adds_a_branch_that_teaches_the_tower_and_leaves_the_head_and_outputs_alone(teacher_ckpt,
                                                                                                    tiny_data):
    """`pd.cross_layer`: the same terms again, through the teacher head's remaining layers. The output terms are the
    same numbers with or without it; the branch's terms reach the student's tower, never its predictors."""
    from ftpdet.errors import ConfigError
    from tests.test_distill import make_distiller

    images, targets, teacher, student = batch_teacher_student(teacher_ckpt, tiny_data)
    with torch.no_grad():
        _, plain = make_distiller(teacher, student, "ftpd").eval()(images, targets)
    d = make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.cross_layer=1"]).eval()
    _, terms = d(images, targets)
    assert set(terms) >= {f"distill_ftpd_x_{k}" for k in ("cls", "box", "giou")} | set(plain)
    for name, value in plain.items():
        assert terms[name].item() == pytest.approx(value.item(), rel=1e-6), name
    branch = sum(v for k, v in terms.items() if k.startswith("distill_ftpd_x_"))
    assert branch.item() > 1e-3
    head = student.head
    grads = torch.autograd.grad(branch, [head.cls_convs[0][0].weight, head.cls_out.weight, head.reg_out.weight],
                                allow_unused=True)
    assert grads[0] is not None and grads[0].abs().sum() > 0  # the tower learns from the branch
    assert all(g is None or g.abs().sum() == 0 for g in grads[1:])  # the student's own predictors do not
    with pytest.raises(ConfigError, match="distill.ftpd: pd.cross_layer .* needs pd.position 'output'"):
        make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.cross_layer=1", "distill.ftpd.pd.position=0"])
