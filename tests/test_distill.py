"""Distillation: zero at a perfect copy, frozen teacher, DLT / CTF properties, PD cross-position, runs."""

import copy
import json

import pytest
import torch

from ftpdet.checkpoint import load_checkpoint, load_teacher
from ftpdet.config import load_config
from ftpdet.data.coco import CocoDetection, collate
from ftpdet.engine.step import Trainee, weigh, weight_table
from ftpdet.engine.train import train
from ftpdet.errors import CheckpointError, ConfigError
from ftpdet.methods import METHODS, NEEDS_UNLABELED, build_methods, parse_method
from ftpdet.methods.ctf import ctf_loss
from ftpdet.methods.temperature import dlt_kl, dlt_temperature
from ftpdet.models.criterion import GFLLoss
from ftpdet.models.detector import build_detector
from ftpdet.sections import LossConfig, ModelConfig
from tests.conftest import tiny_config

# The distillation methods (the `pseudo` control needs unlabeled images: tests/test_unlabeled_methods.py)
ALL_METHODS = [m for m in METHODS if m not in NEEDS_UNLABELED] + ["ftpd+pkd"]
FTPD_VARIANTS = [
    [], ["distill.ftpd.pd.position=output"], ["distill.ftpd.pd.position=1"], ["distill.ftpd.pd.enabled=false"],
    ["distill.ftpd.dlt.mode=std"], ["distill.ftpd.dlt.mode=entropy"], ["distill.ftpd.dlt.enabled=false"],
    ["distill.ftpd.ctf.mode=standardized"], ["distill.ftpd.ctf.mode=binary"], ["distill.ftpd.ctf.enabled=false"],
    ["distill.ftpd.dlt.mode=sharpness"], ["distill.ftpd.ctf.mode=relation"], ["distill.ftpd.rel_weight=1"],
    ["distill.ftpd.pd.box=false"], ["distill.ftpd.pd.cross_layer=1"], ["distill.ftpd.pd.assign=false"],
]


def mimicry(terms: dict) -> dict:
    """The terms that measure a distance to the teacher: all but FTPD's `pd.assign` terms, which are GFL's task terms
    on the teacher's labels (not 0 for an exact copy; tests/test_teacher_labels.py checks them)."""
    return {k: v for k, v in terms.items() if not k.startswith("distill_ftpd_ta_")}


def mimicry_only(spec: str) -> list[str]:
    """Overrides that leave a spec's methods with their mimicry terms only (FTPD without `pd.assign`)."""
    return ["distill.ftpd.pd.assign=false"] if "ftpd" in spec.split("+") else []


@pytest.fixture(scope="module")
def batch(tiny_data):
    ds = CocoDetection(tiny_data / "annotations" / "instances_train.json", tiny_data / "train", 64)
    return collate([ds[i] for i in range(4)])


class Distiller(Trainee):
    """The training step's Trainee with its weight table, called as these tests call it: (GFL's terms raw, the
    distillation terms weighted), so each assertion reads the loss the optimiser sees."""

    def __init__(self, student, teacher, methods, criterion, weights) -> None:
        super().__init__(student, criterion, teacher, methods)
        self.weights = weights

    def __call__(self, images, targets):
        raw = super().__call__(images, targets)
        weighted = weigh(raw, self.weights)
        return ({k: v for k, v in raw.items() if k.startswith("loss_")},
                {k: v for k, v in weighted.items() if k.startswith("distill_")})


def make_distiller(teacher, student, spec="ftpd", overrides=()):
    cfg = load_config(None, list(overrides))
    crit = GFLLoss(LossConfig(), student.num_classes, student.cfg.reg_max, 9)
    weights = weight_table(cfg.loss, cfg.distill, spec)
    return Distiller(student, teacher, build_methods(spec, cfg.distill, student, teacher), crit, weights)


def teacher_model(path):
    from ftpdet.checkpoint import load_model

    return load_model(path)[0]


@pytest.mark.parametrize("spec,overrides", [(m, ()) for m in ALL_METHODS] + [("ftpd", v) for v in FTPD_VARIANTS])
def test_loss_is_zero_for_an_exact_copy_and_positive_otherwise(teacher_ckpt, batch, spec, overrides):
    images, targets = batch
    teacher = teacher_model(teacher_ckpt)
    copy_student = copy.deepcopy(teacher)
    d = make_distiller(teacher, copy_student, spec, overrides).eval()  # eval: same BatchNorm statistics as the teacher
    with torch.no_grad():
        _, terms = d(images, targets)
    for name, value in mimicry(terms).items():
        assert abs(value.item()) < 1e-4, (name, value.item())
    torch.manual_seed(1)
    other = build_detector(teacher.cfg, teacher.num_classes)
    d = make_distiller(teacher, other, spec, overrides).eval()
    with torch.no_grad():
        _, terms = d(images, targets)
    terms = mimicry(terms)
    assert sum(v.item() for v in terms.values()) > 1e-3, {k: v.item() for k, v in terms.items()}


@pytest.mark.parametrize("spec", ALL_METHODS)
def test_steps_train_the_student_only_and_reduce_the_distillation_loss(teacher_ckpt, batch, spec):
    images, targets = batch
    teacher = teacher_model(teacher_ckpt)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    torch.manual_seed(0)
    student = build_detector(ModelConfig(backbone="mobilenet_v3_small", width_mult=0.5, fpn_channels=32,
                                         head_channels=32, num_convs=1), teacher.num_classes)
    s_before = {k: v.clone() for k, v in student.state_dict().items()}
    d = make_distiller(teacher, student, spec, mimicry_only(spec)).train()
    opt = torch.optim.AdamW([p for p in d.parameters() if p.requires_grad], lr=3e-3)
    history = []
    for _ in range(12):
        _, terms = d(images, targets)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    assert history[-1] < history[0], history
    assert all(torch.equal(v, before[k]) for k, v in teacher.state_dict().items())
    assert all(p.grad is None for p in teacher.parameters())
    assert not teacher.training
    assert any(not torch.equal(v, s_before[k]) for k, v in student.state_dict().items() if v.is_floating_point())


@pytest.mark.parametrize("mode", ["std", "entropy", "quality", "sharpness"])
def test_dlt_temperature_is_finite_positive_and_gradient_free(mode):
    one_hot = torch.full((1, 17), -30.0)
    one_hot[0, 4] = 30.0
    edges = torch.cat([one_hot, torch.zeros(1, 17), torch.randn(6, 17) * 5]).requires_grad_(True)
    quality = torch.tensor([1.0, 0.0, 0.3, 0.5, 0.9, 0.2, 0.7, 0.05])
    tau = dlt_temperature(edges, mode, quality)
    assert tau.shape == (8, 1) and torch.isfinite(tau).all() and (tau > 0).all()
    assert not tau.requires_grad
    student = torch.randn(8, 17, requires_grad=True)
    loss = dlt_kl(student, edges, mode, quality)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert edges.grad is None or torch.count_nonzero(edges.grad) == 0  # nothing flows into the teacher side
    assert torch.isfinite(student.grad).all()


def test_entropy_mode_gives_a_flatter_teacher_edge_a_higher_temperature():
    sharp = torch.zeros(1, 17)
    sharp[0, 8] = 6.0
    flat = torch.zeros(1, 17)
    flat[0, 8] = 1.0
    t_sharp, t_flat = dlt_temperature(torch.cat([sharp, flat]), "entropy")
    assert 1.0 <= t_sharp.item() < t_flat.item() <= 17.0
    assert dlt_temperature(torch.zeros(1, 17), "entropy").item() == pytest.approx(17.0)  # uniform: n + 1 bins


def test_quality_mode_is_sharp_for_a_reliable_teacher_box():
    tau = dlt_temperature(torch.randn(3, 17), "quality", torch.tensor([1.0, 0.5, 0.0]))
    assert tau.flatten().tolist() == pytest.approx([1.0, 2.0, 17.0])


@pytest.mark.parametrize("mode", ["standardized", "relation"])
def test_ctf_is_invariant_to_affine_changes_of_teacher_logits(mode):
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(2, 30, 6, generator=g), torch.randn(2, 30, 6, generator=g) * 2
    w = torch.rand(2, 30, generator=g)
    base = ctf_loss(s, t, mode, w)
    for scale, shift in ((3.0, 0.0), (0.25, -4.0), (7.0, 2.5)):
        assert ctf_loss(s, scale * t + shift, mode, w).item() == pytest.approx(base.item(), rel=1e-4, abs=1e-5)
    assert ctf_loss(s, t, "binary", w).item() != pytest.approx(ctf_loss(s, 3 * t, "binary", w).item())


def test_pd_cross_position_trains_layers_up_to_k_and_leaves_no_trace_in_the_student(teacher_ckpt, batch):
    images, targets = batch
    teacher = teacher_model(teacher_ckpt)
    student = build_detector(ModelConfig(backbone="mobilenet_v3_small", width_mult=0.5, fpn_channels=32,
                                         head_channels=32, num_convs=2), teacher.num_classes)
    d = make_distiller(teacher, student, "ftpd", ["distill.ftpd.pd.position=1", *mimicry_only("ftpd")]).train()
    _, terms = d(images, targets)
    sum(terms.values()).backward()
    head = student.head
    assert head.cls_convs[0][0].weight.grad.abs().sum() > 0  # layer 1 (the tap) gets the teacher's signal
    assert head.reg_convs[0][0].weight.grad.abs().sum() > 0
    assert head.cls_convs[1][0].weight.grad is None  # layers after k and the predictors: not from distillation
    assert head.cls_out.weight.grad is None
    assert student.backbone.features.get_submodule("0.0").weight.grad.abs().sum() > 0
    assert list(d.methods["ftpd"].state_dict())  # the adapter (32 -> 48 ch) lives in the method, not the student


def test_distilled_checkpoint_holds_a_plain_student(tiny_data, teacher_ckpt, tmp_path):
    plain = train(tiny_config(tiny_data, tmp_path / "plain", "train.epochs=1"), progress=False)
    dist = train(tiny_config(tiny_data, tmp_path / "dist", "train.epochs=1", "distill.ftpd.pd.position=1"),
                 teacher=teacher_ckpt, method="ftpd+pkd", progress=False)
    a, b = load_checkpoint(plain.out_dir / "last.pt"), load_checkpoint(dist.out_dir / "last.pt")
    assert {k: v.shape for k, v in a["model"].items()} == {k: v.shape for k, v in b["model"].items()}
    assert b["method"] == "ftpd+pkd" and b["teacher"] == str(teacher_ckpt) and "distill_state" in b
    assert "distill_state" not in load_checkpoint(dist.out_dir / "best.pt")


@pytest.mark.parametrize("spec", ALL_METHODS)
def test_every_method_runs_through_the_trainer_and_resumes(tiny_data, teacher_ckpt, tmp_path, spec):
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=2")
    train(cfg, teacher=teacher_ckpt, method=spec, stop_after=1, progress=False)
    result = train(cfg, resume=True, progress=False)  # teacher and method come back from the checkpoint
    lines = (result.out_dir / "metrics.jsonl").read_text()
    for name in build_methods(spec, load_config(None).distill, teacher_model(teacher_ckpt), teacher_model(teacher_ckpt)):
        assert f'"distill_{name}' in lines
    assert load_checkpoint(result.out_dir / "last.pt")["epoch"] == 2


@pytest.mark.parametrize("spec,extra", [("crosskd", []), ("ftpd", ["distill.ftpd.pd.position=1"]),
                                        ("ftpd", ["distill.ftpd.pd.position=0"]), ("ftpd+pkd", []),
                                        ("ftpd", ["distill.ftpd.pd.cross_layer=1"])])
def test_distillation_under_bf16_autocast(tiny_data, teacher_ckpt, tmp_path, spec, extra):
    cfg = tiny_config(tiny_data, tmp_path / "run", "train.epochs=1", "train.amp=bf16", *extra)
    result = train(cfg, teacher=teacher_ckpt, method=spec, progress=False)
    lines = [ln for ln in (result.out_dir / "metrics.jsonl").read_text().splitlines() if "distill_" in ln]
    assert lines and "NaN" not in lines[-1]


def test_teacher_mismatches_are_refused(tiny_data, teacher_ckpt, tmp_path):
    from ftpdet.data.synth import synthesize

    student = build_detector(ModelConfig(), 4)
    ds_cats = CocoDetection(tiny_data / "annotations" / "instances_val.json", tiny_data / "val", 64).categories
    other = synthesize(tmp_path / "other", num_train=2, num_val=1, image_size=64, num_classes=3)
    other_cats = CocoDetection(other / "annotations" / "instances_val.json", other / "val", 64).categories
    with pytest.raises(CheckpointError, match="teacher classes .* differ"):
        load_teacher(teacher_ckpt, student, other_cats)
    with pytest.raises(CheckpointError, match="teacher reg_max 16 differs from the student's 8"):
        load_teacher(teacher_ckpt, build_detector(ModelConfig(reg_max=8), 4), ds_cats)
    with pytest.raises(CheckpointError, match="strides"):
        load_teacher(teacher_ckpt, build_detector(ModelConfig(strides=[8, 16, 32, 64]), 4), ds_cats)


def test_method_names_are_checked():
    assert parse_method("FTPD+pkd") == ["ftpd", "pkd"]
    with pytest.raises(ConfigError, match="unknown method 'fitnet'"):
        parse_method("ftpd+fitnet")
    with pytest.raises(ConfigError, match="listed twice"):
        parse_method("ld+ld")
    # in a config, a misspelt method gets the close-match hint every unknown key gets
    with pytest.raises(ConfigError, match=r"'distill.method': unknown method 'ftdp' \(did you mean 'ftpd'\?\)"):
        load_config(None, ["distill.method=ftdp"])
    assert load_config(None, ["distill.method=FTPD+pkd"]).distill.method == "ftpd+pkd"


def test_each_method_owns_its_config_section_and_weights():
    """Adding a method is its file plus one line in METHODS: its section, defaults and weights come from it."""
    cfg = load_config(None, ["distill.ld.cls_weight=3", "distill.crosskd.giou_weight=0.5"])
    for name, method in METHODS.items():
        assert type(getattr(cfg.distill, name)) is method.Config, name
    table = weight_table(cfg.loss, cfg.distill, "ld+crosskd")
    assert table["distill_ld_cls"] == 3.0 and table["distill_crosskd_giou"] == 0.5 and table["loss_giou"] == 2.0
    with pytest.raises(ConfigError, match=r"unknown key 'distill.ld.temprature' \(did you mean 'temperature'\?\)"):
        load_config(None, ["distill.ld.temprature=2"])
    with pytest.raises(ConfigError, match=r"unknown key 'distill.methd' \(did you mean 'method'\?\)"):
        load_config(None, ["distill.methd=kd"])


def test_api_functions_and_modules_do_not_share_names():
    """`ftpdet.distill(...)` and `ftpdet.export(...)` stay functions after every submodule is imported, with no
    module-class swap: no module or package of ftpdet has the name of an API function."""
    import importlib
    import pkgutil
    import types

    import ftpdet

    modules = [m.name for m in pkgutil.walk_packages(ftpdet.__path__, "ftpdet.") if m.name != "ftpdet.__main__"]
    for name in modules:
        importlib.import_module(name)
    top_level = {m.split(".")[1] for m in modules}
    assert not top_level & {"train", "distill", "evaluate_checkpoint", "predict", "export"}, top_level
    assert type(ftpdet) is types.ModuleType
    for name in ("train", "distill", "evaluate_checkpoint", "predict", "export"):
        assert callable(getattr(ftpdet, name)) and getattr(ftpdet, name).__module__ == "ftpdet.api", name


@pytest.mark.parametrize("spec", ALL_METHODS)
def test_a_batch_without_objects_gives_finite_terms_and_a_gradient_for_every_parameter(teacher_ckpt, batch, spec):
    """DDP needs a gradient for every parameter on every rank, also where a rank's images hold no object."""
    images, targets = batch
    empty = [{**t, "boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.long)} for t in targets]
    teacher = teacher_model(teacher_ckpt)
    torch.manual_seed(0)
    student = build_detector(ModelConfig(backbone="mobilenet_v3_small", width_mult=0.5, fpn_channels=32,
                                         head_channels=32, num_convs=1), teacher.num_classes)
    d = make_distiller(teacher, student, spec).train()
    gfl, terms = d(images, empty)
    loss = sum(gfl.values()) + sum(terms.values())
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in d.parameters() if p.requires_grad)


def test_ld_class_kd_is_averaged_over_classes_and_over_each_levels_positives(teacher_ckpt, batch):
    """LD's class term follows its repository: mean over classes (1/C of the summed KL, not C times more), averaged
    over each FPN level's positives and summed over levels (tests/test_baselines.py has the value-and-gradient check)."""
    from ftpdet.methods.functional import edge_kl

    images, targets = batch
    teacher = teacher_model(teacher_ckpt)
    torch.manual_seed(1)
    student = build_detector(teacher.cfg, teacher.num_classes)
    d = make_distiller(teacher, student, "ld").eval()
    with torch.no_grad():
        _, terms = d(images, targets)
        s_out, t_out = student(images), teacher(images)
        from ftpdet.models.detector import flatten_levels

        s_cls, t_cls = flatten_levels(s_out["cls_logits"]), flatten_levels(t_out["cls_logits"])
        priors = student.priors(s_out)
        _, tg = d.criterion(s_out, priors, targets)
        expected, start = 0.0, 0
        for count in priors.num_per_level:
            pos = tg.pos[:, start : start + count]
            if pos.any():
                kl = edge_kl(s_cls[:, start : start + count][pos], t_cls[:, start : start + count][pos], 2.0)
                expected += kl.sum().item() / teacher.num_classes / pos.sum().item()
            start += count
    assert terms["distill_ld_cls"].item() == pytest.approx(10.0 * expected, rel=1e-4)


def test_the_onnx_runtime_teacher_gives_the_teachers_outputs(teacher_ckpt, tmp_path):
    # Every tensor the methods may read (logits, FPN features, tower features), in the same nesting, from ONNX
    # Runtime; a batch size other than the export's works (dynamic batch).
    from torch.utils._pytree import tree_flatten

    from ftpdet.checkpoint import load_model
    from ftpdet.engine.onnx_teacher import OnnxTeacher

    teacher, cfg, _ = load_model(teacher_ckpt)
    runner = OnnxTeacher(teacher, 64, tmp_path / "teacher.onnx")
    images = torch.randint(0, 256, (3, 3, 64, 64), dtype=torch.uint8)
    with torch.no_grad():
        expected = teacher(images)
    got = runner(images)
    assert got.keys() == expected.keys()
    leaves_e, spec_e = tree_flatten(expected)
    leaves_g, spec_g = tree_flatten(got)
    assert spec_g == spec_e and len(leaves_g) == len(leaves_e) > 10
    for a, b in zip(leaves_g, leaves_e):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_distillation_with_the_onnx_runtime_teacher_matches_pytorch(tiny_data, teacher_ckpt, tmp_path):
    # Same seed, same student, the teacher's forward by either runtime: the logged distillation terms agree (float32
    # teacher and student, so they differ only by float rounding). The precisions are pinned: under `auto` a machine
    # with native bf16 may time bf16 faster for PyTorch's teacher, and the terms then differ by bf16 rounding (~0.2%).
    from ftpdet.engine.train import train

    logs = {}
    for runtime in ("torch", "onnxruntime"):
        cfg = tiny_config(tiny_data, tmp_path / runtime, "train.epochs=1", f"distill.teacher_runtime={runtime}",
                          "train.amp=none", "distill.teacher_amp=none")
        out = train(cfg, progress=False, teacher=teacher_ckpt, method="kd").out_dir
        logs[runtime] = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]
    assert (tmp_path / "onnxruntime" / "teacher.rank0.onnx").is_file()
    first_t, first_o = logs["torch"][0], logs["onnxruntime"][0]
    kd_terms = [k for k in first_t if k.startswith("distill_") and not k.endswith("_raw")]
    assert kd_terms
    for k in kd_terms:
        assert first_o[k] == pytest.approx(first_t[k], rel=1e-3, abs=1e-6), k


@pytest.mark.parametrize("spec", ["kd", "ftpd"])
def test_a_resumed_distillation_gives_the_weights_of_an_uninterrupted_one(tiny_data, teacher_ckpt, tmp_path, spec):
    # As the lab runs: a weight average, the teacher at its own precision; cut after the first epoch.
    overrides = ("train.epochs=2", "train.ema=0.999")
    full = train(tiny_config(tiny_data, tmp_path / "full", *overrides), teacher=teacher_ckpt, method=spec, progress=False)
    cfg = tiny_config(tiny_data, tmp_path / "sliced", *overrides)
    train(cfg, teacher=teacher_ckpt, method=spec, stop_after=1, progress=False)
    resumed = train(cfg, resume=True, progress=False)
    a, b = load_checkpoint(full.out_dir / "last.pt"), load_checkpoint(resumed.out_dir / "last.pt")
    assert a["step"] == b["step"]
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
