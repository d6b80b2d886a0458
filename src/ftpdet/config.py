"""Validated experiment configs: one YAML file per experiment, pydantic models, no inheritance.

`Config` = the sections every floor reads (ftpdet.sections: model, data, train, loss, eval) plus `distill`,
assembled from the method table (ftpdet.methods.METHODS): each method's section is the `Config` model beside
it in its file. Every section rejects unknown keys, so a typo such as ``train.lrr`` is an error that names
the key and the closest valid one instead of a silently ignored setting; so is a misspelt `distill.method`.
"""

from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, create_model, field_validator

from ftpdet.errors import ConfigError
from ftpdet.methods import METHODS, check_method
from ftpdet.sections import DataConfig, EvalConfig, LossConfig, ModelConfig, Section, TrainConfig

# FTPDET_SMOKE=1 and `ftpdet demo --quick`: every schedule and dataset shrunk to seconds, so a test can run each
# command of the README and the tutorial as written. A pipeline check, never a result.
SMOKE_SCHEDULE = ("train.epochs=1", "train.batch_size=8", "train.warmup_steps=2", "train.log_every=1",
                  "train.eval_every=1", "data.image_size=64")
SMOKE_DATA = {"num_train": 24, "num_val": 8, "image_size": 64}


class DistillBase(Section):
    """What to distil with and from; each method's own section is added from the method table."""

    method: str = "ftpd"  # kd | ld | crosskd | bckd | pkd | ftpd, or a combination such as ftpd+pkd
    teacher: str | None = None  # teacher checkpoint (.pt); `ftpdet distill --teacher` overrides it
    # What runs the teacher's no-grad forward: PyTorch, or ONNX Runtime on the CPU in float32 (faster for the
    # MobileNetV3-large benchmark teacher on one CPU, slower for the ResNet-18; docs/speed.md).
    teacher_runtime: Literal["torch", "onnxruntime"] = "torch"
    # The teacher's precision under PyTorch, resolved like train.amp / train.channels_last on the machine that runs
    # the distillation (never copied from the teacher's checkpoint, which says where the teacher was trained).
    teacher_amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    teacher_channels_last: bool | Literal["auto"] = "auto"
    # On unlabeled images (data.unlabeled) the teacher's detections scoring above this, after inference's NMS, are
    # the boxes: the `pseudo` control's hard labels, and what stands in for ground truth where a method needs
    # positives, regions or a normaliser (docs/distillation.md, "On unlabeled images"). Fixed once, never per
    # dataset: 0.40 is where the lab teacher's detections best match the labels of 1,000 held-out shapes (F1 0.405;
    # 0.35 and 0.45 give 0.402; scripts/unlabeled_threshold.py, docs/unlabeled.md).
    unlabeled_score_thr: float = Field(0.4, gt=0, lt=1)

    @field_validator("method")
    @classmethod
    def _known_method(cls, value: str) -> str:
        return "+".join(check_method(value))


DistillConfig = create_model(
    "DistillConfig", __base__=DistillBase, __doc__="The distill section: method, teacher and one section per method.",
    **{name: (method.Config, method.Config()) for name, method in METHODS.items()},
)


class Config(Section):
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
        elif e["type"] == "value_error":  # our own validators' messages (e.g. distill.method) say it all
            parts.append(f"'{key}': {str(e['ctx']['error'])} (got {e.get('input')!r})")
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
