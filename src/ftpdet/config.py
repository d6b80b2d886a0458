"""Validated experiment configs: one YAML file per experiment, pydantic models, no inheritance.

Every section rejects unknown keys, so a typo such as ``train.lrr`` is an error that names the key
and the closest valid one instead of a silently ignored setting.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ftpdet.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Section):
    """Backbone -> FPN -> GFL head. Defaults are the CPU-sized teacher of DESIGN.md section 7."""

    backbone: Literal["resnet18", "resnet34", "resnet50", "mobilenet_v3_large", "mobilenet_v3_small"] = (
        "resnet18"
    )
    width_mult: float = Field(1.0, gt=0, description="MobileNetV3 channel multiplier (ignored for ResNets)")
    # None = random init (nothing downloads); a path to a torchvision state_dict; or
    # "torchvision:<WEIGHTS>" (e.g. torchvision:IMAGENET1K_V1), which downloads where there is internet.
    backbone_weights: str | None = None
    fpn_channels: int = Field(96, ge=8)  # 96, not 256: the standard head spends most of a CPU step
    strides: list[int] = [8, 16, 32]  # P3-P5 for ~128 px images; add 64, 128 (P6, P7) for COCO sizes
    head_channels: int = Field(96, ge=8)
    num_convs: int = Field(2, ge=0)  # convs per tower; GFL uses 4, the CPU-sized head 2
    reg_max: int = Field(16, ge=1)  # edge distributions have reg_max + 1 bins (GFL default 16)
    # ATSS anchor side = anchor_scale * stride. GFL uses 8 for ~800 px COCO images; with 8 on 128 px
    # images no object is big enough for P5, so 4 spreads 6-115 px objects over P3-P5. Use 8 for COCO sizes.
    anchor_scale: float = Field(4.0, gt=0)
    atss_topk: int = Field(9, ge=1)
    atss_fallback: bool = True  # a box ATSS leaves without positives takes its nearest free location

    @model_validator(mode="after")
    def _check_strides(self) -> ModelConfig:
        allowed = [8, 16, 32, 64, 128]
        if self.strides != allowed[: len(self.strides)] or len(self.strides) < 3:
            raise ValueError(f"strides must be one of {[allowed[:n] for n in range(3, 6)]}, got {self.strides}")
        return self


class DataConfig(_Section):
    """Where the COCO-format data lives and how it is augmented."""

    # A dataset laid out as `ftpdet data synth` writes it: root/{train,val}/, root/annotations/.
    # Any of the four explicit paths below overrides the corresponding root-derived one.
    root: str | None = None
    train_ann: str | None = None
    train_images: str | None = None
    val_ann: str | None = None
    val_images: str | None = None
    image_size: int = Field(128, ge=32)  # letterboxed square side; 96-160 px trains in minutes on a CPU
    cache_images: bool = True  # decode every image once; 2,000 images of 128 px are ~100 MB
    num_workers: int = Field(0, ge=0)
    hflip: float = Field(0.5, ge=0, le=1)
    photometric: bool = True

    @model_validator(mode="after")
    def _fill_from_root(self) -> DataConfig:
        if self.root is not None:
            root = Path(self.root)
            defaults = {
                "train_ann": root / "annotations" / "instances_train.json",
                "train_images": root / "train",
                "val_ann": root / "annotations" / "instances_val.json",
                "val_images": root / "val",
            }
            for key, value in defaults.items():
                if getattr(self, key) is None:
                    object.__setattr__(self, key, str(value))
        return self

    def require_paths(self) -> None:
        missing = [k for k in ("train_ann", "train_images", "val_ann", "val_images") if getattr(self, k) is None]
        if missing:
            raise ConfigError(f"data: set data.root or {', '.join('data.' + m for m in missing)}")


class TrainConfig(_Section):
    out_dir: str = "runs/train"
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)  # AdamW 1e-3 is what DESIGN.md section 7 measured from scratch
    weight_decay: float = Field(0.05, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    warmup_steps: int = Field(100, ge=0)
    min_lr_ratio: float = Field(0.05, ge=0, le=1)  # cosine decays to lr * min_lr_ratio
    grad_clip: float | None = Field(10.0, gt=0)
    seed: int = 0
    device: str = "auto"  # auto = cuda when available, else cpu
    amp: Literal["none", "bf16"] = "none"  # bf16 autocast is ~1.5x faster on CPUs with avx512_bf16
    eval_every: int = Field(1, ge=1)  # epochs between evaluations (the last epoch is always evaluated)
    log_every: int = Field(10, ge=1)  # steps between metrics.jsonl lines


class LossConfig(_Section):
    """GFL's loss weights (Li et al. 2020): QFL 1.0 with beta 2, DFL 0.25, GIoU 2.0."""

    qfl_beta: float = 2.0
    qfl: float = 1.0
    dfl: float = 0.25
    giou: float = 2.0


class EvalConfig(_Section):
    score_thr: float = Field(0.05, ge=0, le=1)
    nms_iou: float = Field(0.6, gt=0, le=1)
    pre_nms_topk: int = Field(1000, ge=1)
    max_dets: int = Field(100, ge=1)  # COCO's maxDets
    batch_size: int = Field(32, ge=1)


class KDConfig(_Section):
    """Hinton-style KD on class scores: BCE(sigmoid(z_s / T), sigmoid(z_t / T)), teacher-confidence weighted."""

    temperature: float = Field(2.0, gt=0)
    weight: float = Field(1.0, ge=0)


class LDConfig(_Section):
    """Localization Distillation (Zheng et al., CVPR 2022), the original repository's full scheme."""

    temperature: float = Field(10.0, gt=0)
    weight: float = Field(0.25, ge=0)  # main region: the ATSS positives
    vlr: bool = True  # valuable localization region: 0.25 t <= DIoU(anchor, gt) < t, t = ATSS threshold
    vlr_weight: float = Field(0.25, ge=0)
    cls_kd: bool = True  # class KD at positives: softmax KL at cls_temperature
    cls_temperature: float = Field(2.0, gt=0)
    cls_weight: float = Field(10.0, ge=0)


class CrossKDConfig(_Section):
    """CrossKD (Wang et al., CVPR 2024): student tower features -> the frozen teacher head's remaining layers."""

    layer: int | None = Field(None, ge=0)  # tower layer to tap (None: the teacher's last-but-one, CrossKD's 3 of 4)
    cls_weight: float = Field(1.0, ge=0)
    reg_weight: float = Field(3.0, ge=0)  # KL at T = 1 on edge distributions, summed over bins
    giou_weight: float = Field(2.0, ge=0)


class BCKDConfig(_Section):
    """BCKD (Yang et al., ICCV 2023): binary class distillation + GIoU between decoded boxes, all locations."""

    cls_weight: float = Field(1.0, ge=0)
    box_weight: float = Field(4.0, ge=0)


class PKDConfig(_Section):
    """PKD (Cao et al., NeurIPS 2022): MSE between per-channel z-scored FPN features (Pearson correlation)."""

    weight: float = Field(6.0, ge=0)  # per FPN level, as in mmrazor's PKD detection configs


class PDConfig(_Section):
    enabled: bool = True
    # Where student responses are produced for distillation: "output" (the student's own head outputs)
    # or a tower layer k: student features after layer k go through a frozen copy of the teacher head's
    # remaining layers (training only), so the student head is not pulled between labels and teacher.
    # Default "output": over 3 paired seeds of the quick benchmark it is level with layers 0 and 1 (layer 0
    # minus output -0.14 +- 0.72 AP; +0.06 on average over 21 paired runs in seven configurations), and its
    # step costs 1.04x the floor against 1.14x at layer 0, since no teacher-head branch runs
    # (docs/benchmarks.md). An earlier single-seed run favoured layer 0 by 1.1 AP (docs/distillation.md).
    position: Literal["output"] | int = "output"


class DLTConfig(_Section):
    enabled: bool = True
    mode: Literal["std", "entropy", "quality"] = "quality"  # chosen by measurement: docs/distillation.md


class CTFConfig(_Section):
    enabled: bool = True
    mode: Literal["binary", "standardized", "relation"] = "relation"  # chosen by measurement: docs/distillation.md


class FTPDConfig(_Section):
    """FTPD = PD + DLT + CTF (DESIGN.md section 4). Deliberately no temperature field: DLT and CTF need none."""

    pd: PDConfig = PDConfig()
    dlt: DLTConfig = DLTConfig()
    ctf: CTFConfig = CTFConfig()
    cls_weight: float = Field(1.0, ge=0)
    box_weight: float = Field(1.0, ge=0)


class DistillConfig(_Section):
    method: str = "ftpd"  # kd | ld | crosskd | bckd | pkd | ftpd, or a combination such as ftpd+pkd
    kd: KDConfig = KDConfig()
    ld: LDConfig = LDConfig()
    crosskd: CrossKDConfig = CrossKDConfig()
    bckd: BCKDConfig = BCKDConfig()
    pkd: PKDConfig = PKDConfig()
    ftpd: FTPDConfig = FTPDConfig()


class Config(_Section):
    model: ModelConfig = ModelConfig()
    data: DataConfig = DataConfig()
    train: TrainConfig = TrainConfig()
    loss: LossConfig = LossConfig()
    eval: EvalConfig = EvalConfig()
    distill: DistillConfig = DistillConfig()


def _close_match(loc: tuple[Any, ...]) -> str:
    """A 'did you mean' hint for an unknown key, from the fields of the section it was found in."""
    model: type[BaseModel] = Config
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        if field is None or not (isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)):
            return ""
        model = field.annotation
    match = difflib.get_close_matches(str(loc[-1]), list(model.model_fields), n=1)
    return f" (did you mean '{match[0]}'?)" if match else ""


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem, each naming the key."""
    parts = []
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "<top level>"
        if e["type"] == "extra_forbidden":
            parts.append(f"unknown key '{key}'{_close_match(e['loc'])}")
        else:
            parts.append(f"'{key}': {e['msg']} (got {e.get('input')!r})")
    return f"{source}: " + "; ".join(parts)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `a.b=c` overrides; the value is parsed as YAML, so `train.lr=3e-4` is a float."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.lr=3e-4")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = data
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: '{part}' is not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return data


def builtin_config_path(name: str) -> Path | None:
    """Configs shipped with the package can be named without a path (e.g. `demo_teacher`)."""
    ref = resources.files("ftpdet") / "configs" / f"{name.removesuffix('.yaml')}.yaml"
    return Path(str(ref)) if ref.is_file() else None


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (a path or a builtin name), apply overrides, validate."""
    data: dict[str, Any] = {}
    source = "<defaults>"
    if path is not None:
        p = Path(path)
        if not p.exists():
            builtin = builtin_config_path(str(path))
            if builtin is None:
                raise ConfigError(f"{path}: config file not found")
            p = builtin
        source = str(p)
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping of sections at the top level, got {type(loaded).__name__}")
        data = loaded
    data = apply_overrides(data, overrides or [])
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None


def config_from_dict(data: dict[str, Any], source: str = "checkpoint") -> Config:
    try:
        return Config.model_validate(data)
    except ValidationError as e:
        raise ConfigError(format_validation_error(source, e)) from None
