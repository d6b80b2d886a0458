"""The config sections every floor reads: model, data, train, loss, eval (pydantic, unknown keys rejected).

The whole experiment config (`ftpdet.config.Config`) adds one `distill` section assembled from the methods'
own config models (each beside its method in ftpdet/methods/); it lives above the methods, while these
sections sit low enough for data, models and losses to import.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ftpdet.errors import ConfigError


TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large", "mobilenet_v3_small")


class Section(BaseModel):
    """A config section: unknown keys are errors (a typo such as `train.lrr` names the key and its closest match),
    assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(Section):
    """Backbone -> FPN -> GFL head. Defaults are the CPU-sized teacher of DESIGN.md section 7."""

    # torchvision: resnet18, resnet34, resnet50, resnet101, mobilenet_v3_large, mobilenet_v3_small; or any timm model with
    # features at strides 8, 16 and 32 as timm:<name> (e.g. timm:resnet18, timm:efficientnet_b0).
    backbone: str = "resnet18"
    width_mult: float = Field(1.0, gt=0, description="MobileNetV3 channel multiplier (ignored for ResNets)")
    # None = random init (nothing downloads); a path to a torchvision or timm state_dict (.pth or .safetensors) or
    # to an ftpdet checkpoint (its backbone is taken); "torchvision:<WEIGHTS>" (e.g. torchvision:IMAGENET1K_V1), or
    # "timm" for a timm model's pretrained weights: these two download where there is internet.
    backbone_weights: str | None = None
    fpn_channels: int = Field(96, ge=8)  # 96, not 256: the standard head spends most of a CPU step
    strides: list[int] = [8, 16, 32]  # P3-P5 for ~128 px images; add 64, 128 (P6, P7) for COCO sizes
    fpn_relu_before_p7: bool = True  # P7 = conv(relu(P6)) as torchvision's RetinaNet; mmdetection's GFL: false
    # ResNet backbones, as mmdetection trains them at 2 images per GPU: frozen_stages 1 freezes the stem and layer1
    # (weights and BatchNorm statistics); norm_eval keeps every backbone BatchNorm on its pretrained statistics.
    frozen_stages: int = Field(-1, ge=-1, le=4)  # -1: nothing frozen; 0: the stem; k: the stem and layer1..k
    norm_eval: bool = False
    head_channels: int = Field(96, ge=8)
    num_convs: int = Field(2, ge=0)  # convs per tower; GFL uses 4, the CPU-sized head 2
    reg_max: int = Field(16, ge=1)  # edge distributions have reg_max + 1 bins (GFL default 16)
    # ATSS anchor side = anchor_scale * stride. GFL uses 8 for ~800 px COCO images; with 8 on 128 px
    # images no object is big enough for P5, so 4 spreads 6-115 px objects over P3-P5. Use 8 for COCO sizes.
    anchor_scale: float = Field(4.0, gt=0)
    atss_topk: int = Field(9, ge=1)
    atss_fallback: bool = True  # a box ATSS leaves without positives takes its nearest free location

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        if name.startswith("timm:"):
            import timm  # only when asked for: importing it costs ~1 s

            if not timm.is_model(name.removeprefix("timm:")):
                raise ValueError(f"timm has no model {name.removeprefix('timm:')!r} (see timm.list_models())")
        elif name not in TORCHVISION_BACKBONES:
            raise ValueError(f"unknown backbone {name!r}: one of {', '.join(TORCHVISION_BACKBONES)}, or timm:<name>")
        return name

    @model_validator(mode="after")
    def _resnet_only_freezing(self) -> ModelConfig:
        if (self.frozen_stages >= 0 or self.norm_eval) and not self.backbone.startswith("resnet"):
            raise ValueError(f"frozen_stages and norm_eval are for torchvision ResNets, not {self.backbone}")
        return self

    @model_validator(mode="after")
    def _check_strides(self) -> ModelConfig:
        allowed = [8, 16, 32, 64, 128]
        if self.strides != allowed[: len(self.strides)] or len(self.strides) < 3:
            raise ValueError(f"strides must be one of {[allowed[:n] for n in range(3, 6)]}, got {self.strides}")
        return self


class DataConfig(Section):
    """Where the data lives (COCO, or YOLO / Pascal VOC read directly) and how it is augmented."""

    # coco: a dataset laid out as `ftpdet data synth` or `ftpdet data convert` writes it: root/{train,val}/,
    # root/annotations/; any of the four explicit paths below overrides the corresponding root-derived one.
    # yolo: root is a data.yaml or the folder holding it; voc: root is a VOC folder (Annotations/, JPEGImages/,
    # ImageSets/Main/{train,val}.txt). Both are read as `ftpdet data convert` reads them, without writing a copy.
    format: Literal["coco", "yolo", "voc"] = "coco"
    root: str | None = None
    train_ann: str | None = None
    train_images: str | None = None
    val_ann: str | None = None
    val_images: str | None = None
    image_size: int = Field(128, ge=32)  # letterboxed square side; 96-160 px trains in minutes on a CPU
    # letterbox: a square of image_size (the default); keep_ratio: mmdetection's COCO resize, the shorter side to
    # image_size (e.g. 800), the longer at most max_size (1333), padded to a multiple of 32
    resize: Literal["letterbox", "keep_ratio"] = "letterbox"
    max_size: int = Field(1333, ge=32)
    multiscale: list[int] | None = None  # keep_ratio training: [min, max] shorter side, e.g. [480, 800]
    cache_images: bool = True  # decode every image once; 2,000 images of 128 px are ~100 MB
    # None: 0 on a CPU (the main process loads cached images fastest there), 8 (or the CPU count) with pinned
    # memory on CUDA, where decoding full-size images must overlap the GPU's step
    num_workers: int | None = Field(None, ge=0)
    hflip: float = Field(0.5, ge=0, le=1)
    photometric: bool = True
    # Unlabeled images, a second stream for distillation (`ftpdet distill --unlabeled`): a folder of images (searched
    # recursively), or a COCO JSON whose images are taken and annotations ignored, found under unlabeled_images
    # (default: the JSON's folder). Each step adds round(unlabeled_ratio * labeled images) of them to the batch;
    # the task loss sees only the labeled ones, the teacher's responses all (docs/unlabeled.md). An epoch stays one
    # pass over the labeled images; the unlabeled stream runs on through reshuffled passes of its own.
    unlabeled: str | None = None
    unlabeled_images: str | None = None
    unlabeled_ratio: float = Field(1.0, gt=0, le=16)
    # The unlabeled images' own labels (a COCO JSON, file names relative to their folder): they then train as labeled
    # images, in the same stream. For the benchmark's all-labels ceiling only (the built-in generator knows them).
    unlabeled_labels: str | None = None

    @model_validator(mode="after")
    def _check_resize(self) -> DataConfig:
        if self.multiscale is not None:
            if self.resize != "keep_ratio":
                raise ValueError("multiscale needs resize: keep_ratio (a letterbox has one size)")
            if len(self.multiscale) != 2 or not 32 <= self.multiscale[0] <= self.multiscale[1]:
                raise ValueError(f"multiscale must be [min, max] shorter sides (32 <= min <= max), got {self.multiscale}")
        return self

    @model_validator(mode="after")
    def _fill_from_root(self) -> DataConfig:
        if self.format != "coco":
            explicit = [k for k in ("train_ann", "train_images", "val_ann", "val_images") if getattr(self, k)]
            if explicit:
                raise ValueError(f"data.{explicit[0]} is for COCO files; with format {self.format}, data.root "
                                 "names the dataset")
            return self
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
        if self.format != "coco":
            if self.root is None:
                raise ConfigError(f"data: set data.root to the {self.format.upper()} dataset")
            return
        missing = [k for k in ("train_ann", "train_images", "val_ann", "val_images") if getattr(self, k) is None]
        if missing:
            raise ConfigError(f"data: set data.root or {', '.join('data.' + m for m in missing)}")


class TrainConfig(Section):
    out_dir: str = "runs/train"
    epochs: int = Field(12, ge=1)
    batch_size: int = Field(16, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0)  # AdamW 1e-3 is what DESIGN.md section 7 measured from scratch
    weight_decay: float = Field(0.05, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1)  # SGD only
    warmup_steps: int = Field(100, ge=0)
    warmup_ratio: float = Field(0.1, gt=0, le=1)  # warmup starts at lr * warmup_ratio (mmdetection: 0.001)
    # cosine: from lr down to lr * min_lr_ratio; step: lr * 0.1 after each epoch of lr_steps (mmdetection's 1x:
    # [8, 11] of 12 epochs)
    lr_schedule: Literal["cosine", "step"] = "cosine"
    min_lr_ratio: float = Field(0.05, ge=0, le=1)  # cosine decays to lr * min_lr_ratio
    lr_steps: list[int] = []  # step: epochs after which the lr drops 10x
    grad_clip: float | None = Field(10.0, gt=0)
    seed: int = 0
    device: str = "auto"  # auto = cuda when available, else cpu
    # Precision and memory format of this model. auto (the default): resolved when a run starts, on the device that
    # runs it, by timing the candidates the hardware allows (ftpdet.models.precision): bf16 autocast only where it is
    # native (a CPU with AVX512-BF16 or AMX, a GPU of compute capability 8.0+), fp16 with a GradScaler on older GPUs,
    # else float32; channels_last where it is faster for this model. The run's config.yaml and checkpoint hold the
    # resolved values. An explicit bf16 where it is emulated still runs, after a warning (~10x slower on an AVX2 CPU).
    amp: Literal["auto", "none", "bf16", "fp16"] = "auto"
    channels_last: bool | Literal["auto"] = "auto"
    eval_every: int = Field(1, ge=1)  # epochs between evaluations (the last epoch is always evaluated)
    log_every: int = Field(10, ge=1)  # steps between metrics.jsonl lines
    # Where the numbers go: metrics.jsonl is the run's record (curves.png, resume and the benchmark read it), so it
    # is always on; add tensorboard for event files under OUT/tensorboard (losses, lr, AP, drawn predictions).
    loggers: list[Literal["jsonl", "tensorboard"]] = ["jsonl"]
    # Exponential moving average of the weights (as modern detectors ship them): the decay, e.g. 0.999 for a run of
    # a few thousand steps; it ramps up as decay * (1 - exp(-updates / warmup_steps)). When set, evaluation,
    # best.pt and every loaded checkpoint use the averaged weights; None: off (no measurement has chosen it yet).
    ema: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _step_schedule(self) -> TrainConfig:
        # Steps at or after the last epoch are allowed and never reached (a shortened trial run keeps its config).
        if self.lr_schedule == "step" and not (self.lr_steps and self.lr_steps == sorted(set(self.lr_steps))
                                               and 0 < self.lr_steps[0]):
            raise ValueError(f"lr_schedule step needs lr_steps: increasing epochs from 1, got {self.lr_steps}")
        return self

    @field_validator("loggers")
    @classmethod
    def _jsonl_always(cls, loggers: list[str]) -> list[str]:
        if "jsonl" not in loggers:
            raise ValueError("jsonl is the run's record (curves, resume, benchmarks): write [jsonl, tensorboard]")
        return list(dict.fromkeys(loggers))


class LossConfig(Section):
    """GFL's loss weights (Li et al. 2020): QFL 1.0 with beta 2, DFL 0.25, GIoU 2.0."""

    qfl_beta: float = 2.0
    qfl: float = 1.0
    dfl: float = 0.25
    giou: float = 2.0


class EvalConfig(Section):
    score_thr: float = Field(0.05, ge=0, le=1)
    nms_iou: float = Field(0.6, gt=0, le=1)
    pre_nms_topk: int = Field(1000, ge=1)
    max_dets: int = Field(100, ge=1)  # COCO's maxDets
    batch_size: int = Field(32, ge=1)
