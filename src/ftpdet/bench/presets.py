"""Benchmark presets: how much data, which models, how long, how many seeds.

A preset fixes the schedule (epochs, evaluation cadence) and the seeds; the teacher and student configs
fix the models and optimisers and can be swapped (`--teacher-config`, `--student-config`). Every student
run of one benchmark gets the same schedule, so methods are compared at equal steps.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ftpdet.config import SMOKE_DATA, SMOKE_SCHEDULE

# The main pair is homogeneous (MobileNetV3-large teacher -> MobileNetV3-small student); the heterogeneous
# pair swaps in a ResNet-18 teacher for the same student, so the student baseline is shared by both.
MAIN_METHODS = ("kd", "ld", "crosskd", "bckd", "pkd", "ftpd", "ftpd+pkd")
BASELINES = ("kd", "ld", "crosskd", "bckd", "pkd")
HETERO_METHODS = ("kd", "ld", "bckd", "ftpd")
LD_TAUS = (1, 2, 5, 10, 20)
# FTPD ablation: each row switches parts off (config overrides), so the table is four configs.
ABLATION = {
    "PD": ("distill.ftpd.dlt.enabled=false", "distill.ftpd.ctf.enabled=false"),
    "PD + DLT": ("distill.ftpd.ctf.enabled=false",),
    "PD + CTF": ("distill.ftpd.dlt.enabled=false",),
    "PD + DLT + CTF (FTPD)": (),
}
# Which way of setting the box temperature (DESIGN.md section 4), with PD and CTF at their defaults.
DLT_MODES = {
    "quality (default)": (),
    "entropy": ("distill.ftpd.dlt.mode=entropy",),
    "std": ("distill.ftpd.dlt.mode=std",),
    "sharpness": ("distill.ftpd.dlt.mode=sharpness",),
    "off (KL at T = 1)": ("distill.ftpd.dlt.enabled=false",),
}
# Which class term CTF uses, and whether PD transfers the decoded box, with the other parts at their defaults.
CTF_MODES = {
    "dense (default)": (),
    "dense + relation term": ("distill.ftpd.rel_weight=1",),
    "relation": ("distill.ftpd.ctf.mode=relation",),
    "binary": ("distill.ftpd.ctf.mode=binary",),
    "standardized": ("distill.ftpd.ctf.mode=standardized",),
    "off (binary KL)": ("distill.ftpd.ctf.enabled=false",),
}
# PD's switchable parts, each switched off from the defaults (rows of the position table).
PD_PARTS = {"PD without the box (pd.box=false)": ("distill.ftpd.pd.box=false",),
            "PD without the teacher's labels (pd.assign=false)": ("distill.ftpd.pd.assign=false",)}


PRETRAIN_SEED = 1  # the pretraining set's seed: its images are not the benchmark's (seed 0)

# The unlabeled part (docs/unlabeled.md): the same labeled images plus the preset's unlabeled ones. Rows: the plain
# student (labels only, the main table's run), the all-labels ceiling (every unlabeled image with its own label, in
# the same stream), the `pseudo` control and every method; a patience check (twice the schedule) and a size curve
# (a quarter of the unlabeled images) for pseudo and FTPD.
UNLABELED_METHODS = ("pseudo", "ftpd", "kd", "crosskd", "bckd", "pkd", "ftpd+pkd")  # the control and FTPD first
PATIENCE_METHODS = ("pseudo", "ftpd")
CEILING_LABEL = "student, all labels"
# On an unlabeled image FTPD carries two signals: PD's responses at every location and, with `pd.assign`, GFL's loss
# on the teacher's own boxes (close to what `pseudo` trains on). FTPD without the second tells them apart (3 seeds).
PD_ONLY_LABEL = "ftpd without the teacher's labels (pd.assign=false)"
UNLABELED_PARTS = {PD_ONLY_LABEL: ("distill.ftpd.pd.assign=false",)}

# `ftpdet bench accuracy --only PART`: the tables each part trains, so the parts can run in separate sittings.
PARTS: dict[str, tuple[str, ...]] = {"main": ("main",), "hetero": ("hetero",),
                                     "ablation": ("ablation", "position", "dlt", "ctf"), "tau": ("tau",),
                                     "plateau": ("plateau",),
                                     "unlabeled": ("unlabeled", "unlabeled_patience", "unlabeled_size",
                                                   "unlabeled_parts")}
# The parts a sitting without --only runs: the unlabeled part is a regime of its own, with its own budget (hours).
DEFAULT_PARTS = ("main", "hetero", "ablation", "tau", "plateau")
PLATEAU_LABEL = "student, 2x schedule"  # the plateau table's run: has the plain student stopped improving?


@dataclass(frozen=True)
class Preset:
    name: str
    num_train: int  # built-in dataset size (ignored with --data)
    num_val: int
    image_size: int  # network input side; also the built-in images' side
    teacher: str  # main teacher config (builtin name or YAML path)
    hetero_teacher: str  # heterogeneous teacher (another architecture family than the student)
    student: str
    teacher_epochs: int
    student_epochs: int
    eval_every: int  # student runs; the mAP-over-epochs curves come from these evaluations
    seeds: int  # main comparison
    extra_seeds: int  # LD tau sweep
    # FTPD's ablation (PD, + DLT, + CTF), PD positions and DLT modes: the paired evidence for each part and
    # for each default; with one seed a difference could not be told from seed noise (~0.7 AP)
    ablation_seeds: int
    hetero_seeds: int  # the heterogeneous pair: whether FTPD beats KD and LD there is a paired claim too
    # Backbones pretrained once on a separate built-in dataset (another seed, `pretrain_num_train` images), the way
    # detectors start from ImageNet weights; every run of a role (student, each teacher) starts from its role's
    # pretrained backbone. 0 = random initialisation.
    pretrain_epochs: int = 0
    pretrain_num_train: int = 3200
    pretrain_num_val: int = 200
    common: tuple[str, ...] = ()  # overrides for every run (teachers and students)
    teacher_overrides: tuple[str, ...] = ()  # main teacher
    hetero_overrides: tuple[str, ...] = ()  # heterogeneous teacher
    student_overrides: tuple[str, ...] = ()
    notes: str = ""
    # The unlabeled part: unlabeled images drawn beside the labeled set (0: the part cannot run), and how many of them
    # each step takes per labeled image (data.unlabeled_ratio).
    num_unlabeled: int = 0
    unlabeled_ratio: float = 1.0

    def with_seeds(self, seeds: int | None) -> Preset:
        if seeds is None:
            return self
        return replace(self, seeds=seeds, extra_seeds=min(self.extra_seeds, seeds),
                       ablation_seeds=min(self.ablation_seeds, seeds), hetero_seeds=min(self.hetero_seeds, seeds))


PRESETS: dict[str, Preset] = {
    # A pipeline check for `make test`: tiny models, a few iterations. Its numbers mean nothing.
    "smoke": Preset(
        name="smoke", num_train=SMOKE_DATA["num_train"], num_val=SMOKE_DATA["num_val"], image_size=SMOKE_DATA["image_size"],
        teacher="bench_teacher", hetero_teacher="demo_teacher", student="demo_student",
        teacher_epochs=1, student_epochs=1, eval_every=1, seeds=1, extra_seeds=1, ablation_seeds=1, hetero_seeds=1,
        common=(*SMOKE_SCHEDULE, "train.amp=none"),  # the preset's epochs and eval cadence come after these
        teacher_overrides=("model.backbone=mobilenet_v3_small", "model.fpn_channels=32", "model.head_channels=32"),
        hetero_overrides=("model.fpn_channels=32", "model.head_channels=32"),
        student_overrides=("model.fpn_channels=16", "model.head_channels=16"),
        notes="pipeline check only: a few iterations on tiny models", num_unlabeled=SMOKE_DATA["num_train"],
    ),
    # The earlier CPU benchmark (before the lab): about 2 hours on 2 cores. Its students stop at a third of what they
    # can reach and its differences are the size of seed noise (issue 11); kept to rerun the old tables. The ablation, PD positions, DLT modes and
    # the heterogeneous pair get all 3 seeds: with one, a part's effect, a default or "FTPD beats KD with another
    # architecture's teacher" could not be told from seed noise (~0.7 AP). Only LD's tau sweep runs on one.
    "quick": Preset(
        name="quick", num_train=1600, num_val=400, image_size=128,
        teacher="bench_teacher", hetero_teacher="demo_teacher", student="demo_student",
        teacher_epochs=24, student_epochs=6, eval_every=2, seeds=3, extra_seeds=1, ablation_seeds=3, hetero_seeds=3,
    ),
    # The lab (the default): a regime chosen by measurement so that methods can be told apart (docs/sizing.md).
    # Backbones start from pretraining runs on a separate built-in set of 3,200 images; on 400 training images the
    # student nearly plateaus within its 500 steps and the teacher ends ~11 AP above it; numbers come from the
    # final weight average; 6,400 validation images bring evaluation noise (bootstrap) to about half the seed noise
    # of a paired difference (1,600 left them equal: docs/sizing.md). 5 paired seeds for the
    # main comparison, the heterogeneous pair and the plateau check; 3 for the ablation, PD positions, DLT modes and
    # the tau sweep.
    "lab": Preset(
        name="lab", num_train=400, num_val=6400, image_size=128,
        teacher="bench_teacher", hetero_teacher="demo_teacher", student="bench_student",
        teacher_epochs=40, student_epochs=20, eval_every=10, seeds=5, extra_seeds=3, ablation_seeds=3, hetero_seeds=5,
        pretrain_epochs=15, pretrain_num_train=3200, pretrain_num_val=200,
        common=("train.ema=0.999",),
        num_unlabeled=6400,  # the aim, kept by measurement with the schedule (docs/unlabeled.md)
    ),
    # For a GPU or a long run: 3 seeds everywhere, larger images, more data and epochs.
    "full": Preset(
        name="full", num_train=8000, num_val=1000, image_size=160,
        teacher="bench_teacher", hetero_teacher="demo_teacher", student="demo_student",
        teacher_epochs=36, student_epochs=12, eval_every=3, seeds=3, extra_seeds=3, ablation_seeds=3, hetero_seeds=3,
    ),
}
