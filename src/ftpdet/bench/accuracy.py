"""`ftpdet bench accuracy`: FTPD against every baseline, the FTPD ablation, PD positions, the LD temperature
sweep and a heterogeneous pair, over paired seeds, resumable.

Every run is keyed by a hash of what determines its weights: the resolved config (without its output
directory, data paths and evaluation settings), the method, the teacher's key, a fingerprint of the training
data (annotations and image bytes) and the source of every module a training run executes
(`source_fingerprint`: data, models, losses, the run's methods, engine). So a run shared by two tables (FTPD's
defaults are both the main row and the ablation's "full" row) is trained once, a finished run is never trained
again, an interrupted one resumes from its last checkpoint, and any change that can move a number (code,
config, data) retrains while one that cannot (the report, the CLI, another method's file) does not. Teachers
are keyed the same way.

What a finished run's numbers are measured on has its own key (`eval_key`: the validation data, the evaluation
settings and the evaluation code). Evaluation cannot move the weights (it draws no random numbers from the
training stream, engine/evaluate.py), so when only the validation set or the evaluation changes, a run whose
final checkpoint is here is evaluated again instead of retrained; one whose checkpoint is elsewhere retrains.

Seeds are paired: seed k gives every student run the same initialisation and the same data order and
augmentation (engine/train.py), so methods are compared per seed.
"""

from __future__ import annotations

import hashlib
import json
import platform
import re
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from ftpdet.bench.presets import (ABLATION, CEILING_LABEL, CTF_MODES, DEFAULT_PARTS, DLT_MODES, HETERO_METHODS, LD_TAUS,
                                  MAIN_METHODS, PARTS, PATIENCE_METHODS, PD_PARTS, PLATEAU_LABEL, PRETRAIN_SEED,
                                  UNLABELED_METHODS, UNLABELED_PARTS, Preset)
from ftpdet.config import Config, load_config
from ftpdet.data.coco import read_coco_json
from ftpdet.data.synth import KINDS
from ftpdet.engine.evaluate import METRIC_KEYS
from ftpdet.errors import DatasetError, FtpdetError
from ftpdet.methods import METHODS, parse_method
from ftpdet.provenance import git_commit, machine_description

RESULTS_VERSION = 2  # 2: PD positions and DLT modes run on the ablation seeds; the pair has its own hetero_seeds


@dataclass(frozen=True)
class RunSpec:
    """One cell of one table: a student trained with `method` (None: the plain student) at `seed`."""

    table: str  # main | ablation | position | dlt | ctf | tau | hetero | plateau
    label: str  # the row in that table
    method: str | None
    seed: int
    teacher: str | None = None  # teacher role: main | hetero
    overrides: tuple[str, ...] = ()
    # What it trains on besides the labeled set: "labeled" (nothing), "unlabeled" (the preset's unlabeled images),
    # "unlabeled_quarter" (the first quarter of them), "all_labels" (all of them, with their own labels: the ceiling)
    data: str = "labeled"


def plan_runs(preset: Preset, student_convs: int, teacher_convs: int, only: tuple[str, ...] = ()) -> list[RunSpec]:
    """Every cell of every table of the `only` parts (default: DEFAULT_PARTS), seed 0 of all tables first, so an
    interrupted benchmark already has one complete picture. Identical runs (same key) in several tables are trained
    once."""
    specs: list[RunSpec] = []
    positions = ["output"] + [str(k) for k in range(min(student_convs, teacher_convs) + 1)]
    for seed in range(max(preset.seeds, preset.extra_seeds, preset.ablation_seeds, preset.hetero_seeds)):
        if seed < preset.seeds:
            specs.append(RunSpec("main", "student", None, seed))
            specs += [RunSpec("main", m, m, seed, "main") for m in MAIN_METHODS]
        if seed < preset.ablation_seeds:  # FTPD's parts and its choices: each needs paired seeds to be told apart
            specs += [RunSpec("ablation", name, "ftpd", seed, "main", ov) for name, ov in ABLATION.items()]
            specs.append(RunSpec("ablation", "FTPD + PKD", "ftpd+pkd", seed, "main"))
            specs += [RunSpec("position", p, "ftpd", seed, "main", (f"distill.ftpd.pd.position={p}",)) for p in positions]
            specs += [RunSpec("dlt", name, "ftpd", seed, "main", ov) for name, ov in DLT_MODES.items()]
            specs += [RunSpec("ctf", name, "ftpd", seed, "main", ov) for name, ov in CTF_MODES.items()]
            specs += [RunSpec("position", name, "ftpd", seed, "main", ov) for name, ov in PD_PARTS.items()]
        if seed < preset.extra_seeds:
            specs += [RunSpec("tau", f"LD tau={t}", "ld", seed, "main", (f"distill.ld.temperature={t}",)) for t in LD_TAUS]
            specs.append(RunSpec("tau", "FTPD (no tau)", "ftpd", seed, "main"))
        if seed < preset.hetero_seeds:
            specs.append(RunSpec("hetero", "student", None, seed))
            specs += [RunSpec("hetero", m, m, seed, "hetero") for m in HETERO_METHODS]
        doubled = (f"train.epochs={2 * preset.student_epochs}", f"train.eval_every={2 * preset.eval_every}")
        if seed < preset.seeds:  # the regime's evidence: the plain student at twice its schedule (same seeds)
            specs.append(RunSpec("plateau", PLATEAU_LABEL, None, seed, None, doubled))
        if seed < preset.seeds and preset.num_unlabeled:
            specs.append(RunSpec("unlabeled", "student", None, seed))
            specs.append(RunSpec("unlabeled", CEILING_LABEL, None, seed, data="all_labels"))
            specs += [RunSpec("unlabeled", m, m, seed, "main", data="unlabeled") for m in UNLABELED_METHODS]
            specs += [RunSpec("unlabeled_patience", f"{m}, 2x schedule", m, seed, "main", doubled, data="unlabeled")
                      for m in PATIENCE_METHODS]
        if seed < preset.ablation_seeds and preset.num_unlabeled:
            specs += [RunSpec("unlabeled_size", f"{m}, a quarter of the unlabeled images", m, seed, "main",
                              data="unlabeled_quarter") for m in PATIENCE_METHODS]
            specs += [RunSpec("unlabeled_parts", name, "ftpd", seed, "main", ov, data="unlabeled")
                      for name, ov in UNLABELED_PARTS.items()]
    tables = {t for part in (only or DEFAULT_PARTS) for t in PARTS[part]}
    return [s for s in specs if s.table in tables]


def data_fingerprint(ann: Path, image_size: int | None = None) -> str:
    """What one split contributes to a key: its annotation file's bytes, every image file's name and bytes in the
    folder beside it (a dataset redrawn with the same boxes is another dataset), and the input size if given."""
    h = hashlib.sha256()
    h.update(ann.read_bytes())
    split = ann.parent.parent / ann.stem.removeprefix("instances_")
    for image in sorted(split.iterdir()) if split.is_dir() else ():
        h.update(image.name.encode() + image.read_bytes())
    if image_size is not None:
        h.update(str(image_size).encode())
    return h.hexdigest()[:16]


def run_key(cfg: Config, method: str | None, teacher_key: str | None, data_fp: str, pretrain: str | None = None) -> str:
    """Hash of everything that decides the weights; the output directory, the data's paths and the evaluation
    settings do not (`eval_key` covers those). `data_fp`: the training split's fingerprint. `pretrain`: the key of
    the run whose backbone this one starts from (its path is left out, like every path)."""
    dump = cfg.model_dump()
    dump["train"].pop("out_dir")
    dump.pop("eval")
    for k in ("root", "train_ann", "train_images", "val_ann", "val_images"):
        dump["data"].pop(k)
    # Unlabeled images: their paths never count (`data_fp` holds their fingerprint); how many a step takes and the
    # teacher-score threshold that stands in for labels on them do. A run without them keeps its earlier key.
    unlabeled = {k: dump["data"].pop(k) for k in ("unlabeled", "unlabeled_images", "unlabeled_ratio", "unlabeled_labels")}
    names = parse_method(method) if method is not None else []
    # Only the sections of the methods that run: changing one method's defaults must not retrain the others
    # (distill.method and distill.teacher are not read either; method and teacher come from the run).
    # With a teacher, what runs its forward counts too (ONNX Runtime in float32 vs PyTorch at the teacher's precision).
    dump["distill"] = {name: dump["distill"][name] for name in names}
    if names:  # and the teacher's precision (resolved on this machine: AccuracyBench.resolved)
        for k in ("teacher_runtime", "teacher_amp", "teacher_channels_last"):
            dump["distill"][k] = getattr(cfg.distill, k)
    fields = {"config": dump, "method": method, "teacher": teacher_key, "data": data_fp, "code": source_fingerprint(names)}
    if unlabeled["unlabeled"] is not None:
        fields["unlabeled"] = {"ratio": unlabeled["unlabeled_ratio"], "labels": unlabeled["unlabeled_labels"] is not None,
                               "score_thr": cfg.distill.unlabeled_score_thr}
    if pretrain is not None:  # the pretraining run's key stands for the backbone file it writes
        dump["model"].pop("backbone_weights")
        fields["pretrain"] = pretrain
    payload = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def eval_key(cfg: Config, val_fp: str) -> str:
    """Hash of what decides a finished run's numbers besides its weights: the validation split's fingerprint, the
    evaluation settings, the input pipeline (size, resize mode) and the source of the evaluation path."""
    data = cfg.data.model_dump()
    for k in ("root", "train_ann", "train_images", "val_ann", "val_images", "unlabeled", "unlabeled_images",
              "unlabeled_ratio", "unlabeled_labels"):  # what a run trains on, not how it is measured
        data.pop(k)
    fields = {"eval": cfg.eval.model_dump(), "data": data, "val": val_fp,
              "code": source_fingerprint([], entry="ftpdet.engine.evaluate")}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]


# Top-level (unindented) imports of ftpdet modules: `import ftpdet.a.b`, `from ftpdet.a import b, c`, and the
# parenthesised form over several lines.
IMPORT = re.compile(r"^(?:import (ftpdet[\w.]*)|from (ftpdet[\w.]*) import (?:\(([^)]*)\)|([\w, ]+)))", re.M)


def training_modules(methods: list[str], entry: str = "ftpdet.engine.train") -> dict[str, Path]:
    """{module: file} of every module a training run with `methods` executes: `entry` (ftpdet.engine.train) and, through
    their top-level imports, the data, model, loss, method and engine modules it reaches, with their packages'
    __init__ files (not the package root's: the API functions and the version). Methods outside the run are left out (the method table imports their files, but none of their
    code runs), so editing FTPD does not retrain KD. Imports inside functions (the curves plot drawn at the end of
    a run) are left out too: they cannot move a number."""
    root = Path(__file__).resolve().parents[1]  # src/ftpdet
    skip = {f"ftpdet.methods.{name}" for name in METHODS if name not in methods}
    todo, found = [entry], {}
    while todo:
        module = todo.pop()
        if module in found or module in skip:
            continue
        parts = module.split(".")[1:]
        if not parts:
            continue  # the package root: the API and the version, nothing a number depends on
        path = next((p for p in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py"))
                     if p.is_file()), None)
        if path is None:
            continue  # a name imported from a module (`from ftpdet.pkg.mod import name`), not a module
        found[module] = path
        todo.append(module.rsplit(".", 1)[0])  # its package's __init__ runs first
        for imp, frm, grouped, names in IMPORT.findall(path.read_text()):
            todo.append(imp or frm)
            todo += [f"{frm}.{n.strip()}" for n in (grouped or names).split(",") if frm and n.strip()]
    return found


def source_fingerprint(methods: list[str], entry: str = "ftpdet.engine.train") -> str:
    """Hash of the source of `training_modules(methods, entry)`: an edit to any of them retrains (or, from the
    evaluation's entry, re-evaluates) the runs that execute it."""
    h = hashlib.sha256()
    for module, path in sorted(training_modules(methods, entry).items()):
        h.update(module.encode() + path.read_bytes())
    return h.hexdigest()[:16]


def write_json(path: Path, obj: Any) -> None:
    """Write through a temporary file and rename: a sitting cut off mid-write leaves the old file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)


def metrics_record(result, steps: int) -> dict[str, Any]:
    """AP and friends (%) of the final checkpoint (no best-epoch picking on the validation set), time, curve."""
    m = result.last_metrics
    return {
        **{k: round(100 * m[k], 3) for k in METRIC_KEYS},
        "train_seconds": round(result.train_seconds, 1),
        "steps": steps,
        "seconds_per_step": round(result.train_seconds / max(steps, 1), 5),
        "history": [{"epoch": h["epoch"], "AP": round(100 * h["metrics"]["AP"], 3)} for h in result.history],
    }


def last_epoch_terms(metrics_jsonl: Path) -> dict[str, float]:
    """Each loss term's mean over the last epoch's logged steps, weighted (what the optimiser sums) and raw
    (`<name>_raw`), from a run's metrics.jsonl: the per-term log that says what a method actually optimised."""
    if not metrics_jsonl.is_file():
        return {}
    train = [r for r in map(json.loads, metrics_jsonl.read_text().splitlines()) if "eval" not in r and "epoch" in r]
    last = [r for r in train if r["epoch"] == train[-1]["epoch"]] if train else []
    names = sorted({k for r in last for k in r if k.startswith(("loss", "distill"))})
    return {k: round(sum(r[k] for r in last if k in r) / sum(k in r for r in last), 5) for k in names}


class AccuracyBench:
    """Plans, runs (or reuses) and collects every run of one benchmark under `out`."""

    def __init__(
        self,
        preset: Preset,
        out: str | Path,
        data: str | Path | None = None,
        teacher_config: str | None = None,
        hetero_teacher_config: str | None = None,
        student_config: str | None = None,
        progress: bool = True,
        command: str | None = None,
        only: tuple[str, ...] = (),
        reuse: tuple[str | Path, ...] = (),
        mirror: str | Path | None = None,
        dataset: str = "shapes",
    ) -> None:
        """`only`: the parts (presets.PARTS) to run; the other tables of an earlier sitting's results.json in `out`
        are kept. `reuse`: results JSON files (e.g. a committed docs/benchmarks/accuracy.json) whose finished
        records are taken instead of training a run of the same key (a run is a function of its key). `mirror`: a
        second path the results JSON is written to after every run (the report's committed copy), so a sitting cut
        off on one machine leaves every finished record where a commit takes it."""
        self.preset, self.out, self.progress = preset, Path(out), progress
        self.mirror = Path(mirror) if mirror is not None else None
        self.only = tuple(only)
        unknown = [p for p in self.only if p not in PARTS]
        if unknown:
            raise FtpdetError(f"--only {unknown[0]}: choose from {', '.join(PARTS)}")
        # A run is a function of its key on one machine: another CPU's kernels may round differently, so the same key
        # can train other weights there (the lab's bf16 teacher: 24.46 AP on an AMD EPYC, 25.39 on an Intel Xeon with
        # AMX; the float32 student's pretraining gave the same AP on both). Runs of two machines never share a
        # table: results of another machine are not continued, nor their records reused.
        self.machine = machine_description()
        own = {path: json.loads(path.read_text()) for path in (self.out / "results.json", self.mirror)
               if path is not None and path.is_file()}
        for path, results in own.items():
            if results.get("machine") not in (None, self.machine):
                raise FtpdetError(f"{path}: measured on {results['machine']}, and this machine is {self.machine}; the "
                                  "same run trains other weights on another CPU, so runs made here would not pair with "
                                  "its runs. Give this machine its own --out and --report, or run where those were measured")
        # The earlier sitting: --out's results, else (a new machine of the same kind) the report's own JSON.
        self.previous = next(iter(own.values()), {})
        self.kept_records: list[dict] = []  # the earlier sitting's records (those its tables still list are kept)
        self.known: dict[str, dict] = {}  # finished records by key, from earlier sittings and committed results
        self.known_teachers: dict[str, dict] = {}
        reused = {str(source): json.loads(Path(source).read_text()) for source in reuse if Path(source).is_file()}
        for source, earlier in [*reused.items(), ("--out", self.previous)]:
            here = self.same_machine(earlier)
            skipped = sum(r.get("status") == "done" for r in earlier.get("records", [])) - sum(
                r.get("status") == "done" for r in here["records"])
            if skipped:
                print(f"{source}: {skipped} finished runs were measured on {earlier.get('machine')}, not on this "
                      f"machine ({self.machine}): not reused")
            self.known |= {r["key"]: r for r in here["records"] if r.get("status") == "done"}
            self.known_teachers |= {t["key"]: t for t in here["teachers"] if t.get("status") == "done"}
        self.configs = {
            "main": teacher_config or preset.teacher,
            "hetero": hetero_teacher_config or preset.hetero_teacher,
            "student": student_config or preset.student,
        }
        self.user_data = Path(data) if data is not None else None
        if dataset not in KINDS:
            raise FtpdetError(f"--dataset {dataset}: choose from {', '.join(KINDS)}")
        if data is not None and dataset != "shapes":
            raise FtpdetError(f"--data {data} and --dataset {dataset}: give one (--dataset names a built-in dataset)")
        self.dataset = dataset
        self.command = command or "ftpdet.bench.accuracy.AccuracyBench (Python API)"
        self.records: dict[str, dict] = {}
        self.teacher_records: dict[str, dict] = {}
        # Teachers whose checkpoint this invocation trained or found finished in its run directory (role -> key).
        # A run whose checkpoint others start from (a pretraining, a teacher) counts as finished only by its own
        # record.json: a run cut off while training leaves a mid-training last.pt under the same key, and a finished
        # record of that key from earlier results (the committed JSON of another checkout) says nothing about it.
        self.ready_teachers: dict[str, str] = {}
        self.pretrain_records: dict[str, dict] = {}
        self._params: dict[str, float] = {}
        # The unlabeled part's data (prepare_unlabeled): {spec.data: (config overrides, fingerprint)}
        self.unlabeled_data: dict[str, tuple[tuple[str, ...], str]] = {}
        self.num_unlabeled: int | None = None
        # Each model's resolved precision (AccuracyBench.resolved), part of every run key: kept in the results JSON and
        # taken back on the same machine, so a lost or re-timed precision cache cannot re-key the runs of a sitting.
        self._precisions: dict[str, dict] = {}
        for results in [*reused.values(), self.previous]:
            if results.get("machine") == self.machine:
                self._precisions |= results.get("precisions", {})

    def same_machine(self, results: dict[str, Any]) -> dict[str, list[dict]]:
        """The records and teacher/pretraining records of a results JSON measured on this machine: each record's own
        `machine`, else (records from before it was kept per run) the file's."""
        def here(rs: list[dict]) -> list[dict]:
            return [r for r in rs if r.get("machine", results.get("machine")) == self.machine]

        return {"records": here(results.get("records", [])),
                "teachers": here([*results.get("teachers", {}).values(), *results.get("pretrain", {}).values()])}

    # -- data ------------------------------------------------------------------------------------------
    def prepare_data(self) -> Path:
        p = self.preset
        if self.user_data is not None:
            root = self.user_data
            for rel in ("annotations/instances_train.json", "annotations/instances_val.json", "train", "val"):
                if not (root / rel).exists():
                    raise DatasetError(f"{root / rel}: not found; --data expects the layout `ftpdet data synth` writes "
                                       "(DIR/train/, DIR/val/, DIR/annotations/instances_{train,val}.json)")
        else:
            from ftpdet.data.synth import synthesize_once

            root = self.out / "data"
            kind = {} if self.dataset == "shapes" else {"kind": self.dataset}  # the shapes' marker predates kinds
            if synthesize_once(root, seed=0, num_train=p.num_train, num_val=p.num_val, image_size=p.image_size, **kind):
                print(f"built-in dataset ({self.dataset}): {p.num_train} train / {p.num_val} val images -> {root}")
        self.data_root = root
        train_ann = root / "annotations" / "instances_train.json"
        self.train_fp = data_fingerprint(train_ann, p.image_size)
        self.val_fp = data_fingerprint(root / "annotations" / "instances_val.json")
        self.num_classes = len(read_coco_json(train_ann)["categories"])
        if p.pretrain_epochs:
            from ftpdet.data.synth import synthesize_once

            self.pretrain_root = self.out / "pretrain_data"
            synthesize_once(self.pretrain_root, seed=PRETRAIN_SEED, num_train=p.pretrain_num_train,
                            num_val=p.pretrain_num_val, image_size=p.image_size)
            ann = self.pretrain_root / "annotations"
            self.pretrain_fp = data_fingerprint(ann / "instances_train.json", p.image_size)
            self.pretrain_val_fp = data_fingerprint(ann / "instances_val.json")
        return root

    def prepare_unlabeled(self) -> None:
        """The unlabeled part's images: DIR/unlabeled/ beside the labeled set (the built-in set gets the preset's
        number, drawn from their own stream; with --data, `ftpdet data synth --num-unlabeled` or the user put them
        there), their labels (DIR/annotations/instances_unlabeled.json, for the ceiling only) and a listing of their
        first quarter (the size curve)."""
        p, root = self.preset, self.data_root
        if self.user_data is None:
            from ftpdet.data.synth import synthesize_unlabeled_once

            kind = {} if self.dataset == "shapes" else {"kind": self.dataset}
            if synthesize_unlabeled_once(root, seed=0, num_unlabeled=p.num_unlabeled, image_size=p.image_size, **kind):
                print(f"built-in unlabeled images ({self.dataset}): {p.num_unlabeled} -> {root / 'unlabeled'}")
        from ftpdet.data.unlabeled import image_paths

        paths = image_paths(root / "unlabeled")  # DatasetError when the folder is missing or holds no image
        quarter = root / "unlabeled_quarter.json"
        listing = {"images": [{"id": i + 1, "file_name": str(path.relative_to(root / "unlabeled"))}
                              for i, path in enumerate(paths[: max(1, len(paths) // 4)])]}
        if not quarter.is_file() or json.loads(quarter.read_text()) != listing:
            write_json(quarter, listing)
        labels = root / "annotations" / "instances_unlabeled.json"

        def fingerprint(images: list[Path], *extra: Path) -> str:
            h = hashlib.sha256(self.train_fp.encode())
            for image in images:
                h.update(str(image.relative_to(root)).encode() + image.read_bytes())
            for path in extra:
                h.update(path.read_bytes())
            return h.hexdigest()[:16]

        self.unlabeled_data = {
            "unlabeled": ((f"data.unlabeled={root / 'unlabeled'}",), fingerprint(paths)),
            "unlabeled_quarter": ((f"data.unlabeled={quarter}", f"data.unlabeled_images={root / 'unlabeled'}"),
                                  fingerprint(paths[: len(listing["images"])])),
        }
        if labels.is_file():
            self.unlabeled_data["all_labels"] = ((f"data.unlabeled={root / 'unlabeled'}",
                                                  f"data.unlabeled_labels={labels}"), fingerprint(paths, labels))
        self.num_unlabeled = len(paths)

    def data_of(self, spec: RunSpec) -> tuple[tuple[str, ...], str]:
        """(config overrides, training-data fingerprint) of what `spec` trains on."""
        if spec.data == "labeled":
            return (), self.train_fp
        if spec.data not in self.unlabeled_data:
            raise DatasetError(f"{self.data_root / 'annotations' / 'instances_unlabeled.json'}: not found; the "
                               "all-labels ceiling needs the unlabeled images' labels")
        overrides, fp = self.unlabeled_data[spec.data]
        return (*overrides, f"data.unlabeled_ratio={self.preset.unlabeled_ratio}"), fp

    # -- configs ---------------------------------------------------------------------------------------
    def config(self, role: str, seed: int, overrides: tuple[str, ...] = ()) -> Config:
        """A run's config: the role's YAML, then the preset's schedule and the run's overrides."""
        p = self.preset
        is_teacher = role in ("main", "hetero")
        schedule = [f"train.epochs={p.teacher_epochs if is_teacher else p.student_epochs}",
                    f"train.eval_every={p.teacher_epochs if is_teacher else p.eval_every}"]
        base = [f"data.root={self.data_root}", f"data.image_size={p.image_size}", f"train.seed={seed}",
                f"train.out_dir={self.out}"]  # each run's own directory is set when it trains
        extra = {"main": p.teacher_overrides, "hetero": p.hetero_overrides}.get(role, p.student_overrides)
        return self.resolved(load_config(self.configs[role], [*base, *p.common, *extra, *schedule, *overrides]))

    def resolved(self, cfg: Config, teacher: Config | None = None) -> Config:
        """cfg with the precision a run of it resolves to on this machine (train.amp / channels_last auto), and with
        `teacher`'s config the teacher's too: part of the run's key, since bf16 and float32 train other weights."""
        from ftpdet.engine.run_precision import resolve_precisions
        from ftpdet.engine.train import resolve_device
        from ftpdet.models.detector import build_detector

        memo = json.dumps([cfg.model.model_dump(), cfg.train.amp, cfg.train.channels_last, cfg.train.batch_size,
                           cfg.data.image_size, cfg.train.device, cfg.distill.model_dump(include={
                               "teacher_runtime", "teacher_amp", "teacher_channels_last"}),
                           teacher.model.model_dump() if teacher else None], sort_keys=True, default=str)
        key = hashlib.sha256(memo.encode()).hexdigest()[:16]
        if key not in self._precisions:  # decided once per machine: earlier sittings' decisions are kept
            def model(c: Config) -> torch.nn.Module:
                return build_detector(c.model.model_copy(update={"backbone_weights": None}), self.num_classes)

            found = resolve_precisions(cfg, model(cfg), self.num_classes, model(teacher) if teacher else None,
                                       teacher, resolve_device(cfg.train.device), cfg.train.batch_size).config
            self._precisions[key] = {"amp": found.train.amp, "channels_last": found.train.channels_last,
                                     "teacher_amp": found.distill.teacher_amp,
                                     "teacher_channels_last": found.distill.teacher_channels_last}
        chosen = self._precisions[key]
        train = {k: chosen[k] for k in ("amp", "channels_last")}
        distill = {k: chosen[k] for k in ("teacher_amp", "teacher_channels_last")}
        return cfg.model_copy(update={"train": cfg.train.model_copy(update=train),
                                      "distill": cfg.distill.model_copy(update=distill)})

    # -- runs ------------------------------------------------------------------------------------------
    def finished(self, cfg: Config, key: str, measured: str, run_dir: Path, known: dict[str, dict]) -> dict | None:
        """The finished record of `key` with the eval key `measured`: the run directory's record.json, else one
        from earlier results; one measured on another validation set (or with other evaluation settings) is
        evaluated again from the run's final checkpoint when that is here. None: the run has to train (or resume)."""
        record_path = run_dir / "record.json"
        local = json.loads(record_path.read_text()) if record_path.exists() else None
        candidates = [r for r in (local, known.get(key)) if r is not None and r.get("key") == key]
        for record in candidates:
            if record["status"] != "done" or record.get("eval_key") == measured:
                return dict(record)
        if candidates and (run_dir / "last.pt").exists() and local is not None and local.get("status") == "done":
            return self._reevaluate(cfg, local, run_dir, measured)
        return None

    def _reevaluate(self, cfg: Config, record: dict, run_dir: Path, wanted: str) -> dict:
        """The finished run in run_dir measured again from its final checkpoint (what training evaluated last:
        the weight average when there is one) on cfg's validation set. The curve (`history`) stays as measured
        while training, on the set `history_eval_key` names."""
        from ftpdet.data.coco import CocoDetection
        from ftpdet.data.transforms import Resize
        from ftpdet.engine.evaluate import evaluate
        from ftpdet.runtime import load_predictor

        print(f"   re-evaluating {run_dir.name}: measured on another validation set or with other settings")
        t0 = time.perf_counter()
        model, _, cats = load_predictor(run_dir / "last.pt")
        dataset = CocoDetection(cfg.data.val_ann, cfg.data.val_images, Resize.of(cfg.data), train=False, categories=cats)
        metrics, _ = evaluate(model, dataset, cfg.eval, progress=self.progress)
        record = record | {k: round(100 * metrics[k], 3) for k in METRIC_KEYS} | {
            "eval_key": wanted, "history_eval_key": record.get("history_eval_key", record.get("eval_key")),
            "val_images": len(dataset), "eval_seconds": round(time.perf_counter() - t0, 1)}
        write_json(run_dir / "record.json", record)
        return record

    def _train(self, cfg: Config, key: str, measured: str, run_dir: Path, teacher: Path | None,
               method: str | None) -> dict:
        """Train or resume the run in run_dir; its record.json marks it finished."""
        from ftpdet.engine.train import train

        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"out_dir": str(run_dir)})})
        resume = (run_dir / "last.pt").exists()
        t0 = time.perf_counter()
        try:
            result = train(cfg, resume=resume, overwrite=not resume, teacher=teacher, method=method, progress=self.progress)
        except FtpdetError as e:  # a failed run is a result too (e.g. a non-finite loss): record it, go on
            record = {"key": key, "status": "failed", "error": str(e)}
        else:
            steps = result.history[-1]["step"] if result.history else 0
            record = {"key": key, "status": "done", "eval_key": measured, "history_eval_key": measured,
                      "val_images": len(read_coco_json(Path(cfg.data.val_ann))["images"]), **metrics_record(result, steps),
                      "terms": last_epoch_terms(run_dir / "metrics.jsonl")}
        record["wall_seconds"] = round(time.perf_counter() - t0, 1)
        record["run_dir"] = str(run_dir)
        record["machine"] = self.machine
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "record.json", record)
        return record

    def pretrain_key(self, role: str) -> tuple[Config, str, Path] | None:
        """The config, key and run directory of the pretraining run whose backbone `role`'s runs start from (None
        without pretraining): the role's model on the separate pretraining set, seed 0."""
        p = self.preset
        if not p.pretrain_epochs:
            return None
        extra = {"main": p.teacher_overrides, "hetero": p.hetero_overrides}.get(role, p.student_overrides)
        cfg = self.resolved(load_config(self.configs[role], [
            f"data.root={self.pretrain_root}", f"data.image_size={p.image_size}", "train.seed=0", f"train.out_dir={self.out}",
            *p.common, *extra, f"train.epochs={p.pretrain_epochs}", f"train.eval_every={p.pretrain_epochs}"]))
        key = run_key(cfg, None, None, self.pretrain_fp)
        return cfg, key, self.out / "pretrain" / f"{role}-{key}"

    def measured(self, cfg: Config, pretraining: bool = False) -> str:
        """The eval key a run of cfg is measured with: the benchmark's validation set, or the pretraining set's."""
        return eval_key(cfg, self.pretrain_val_fp if pretraining else self.val_fp)

    def pretrained(self, role: str) -> Path:
        """The pretraining run's checkpoint for `role`, trained once (and reused by key like every run)."""
        cfg, key, run_dir = self.pretrain_key(role)
        ckpt = run_dir / "last.pt"
        measured = self.measured(cfg, pretraining=True)
        record = self.finished(cfg, key, measured, run_dir, {}) if ckpt.exists() else None  # see ready_teachers
        if record is None:
            print(f"\n== pretraining ({role}): {self.configs[role]} ({cfg.model.backbone}) on the separate pretraining "
                  f"set, {cfg.train.epochs} epochs -> {run_dir}")
            record = self._train(cfg, key, measured, run_dir, None, None)
            if record["status"] != "done":
                raise FtpdetError(f"{run_dir}: pretraining for {role} failed: {record['error']}")
        self.pretrain_records[role] = record | {"role": role, "config": self.configs[role], "backbone": cfg.model.backbone}
        return ckpt

    def starting_from(self, cfg: Config, role: str) -> Config:
        """cfg with the backbone starting from `role`'s pretrained one (trained first if needed); unchanged without."""
        if not self.preset.pretrain_epochs:
            return cfg
        return cfg.model_copy(update={"model": cfg.model.model_copy(update={"backbone_weights": str(self.pretrained(role))})})

    def _pretrain(self, role: str) -> str | None:
        found = self.pretrain_key(role)
        return found[1] if found else None

    def teacher_key(self, role: str) -> tuple[Config, str, Path]:
        """The teacher's config, key and run directory (nothing is trained)."""
        cfg = self.config(role, 0)
        key = run_key(cfg, None, None, self.train_fp, self._pretrain(role))
        return cfg, key, self.out / "teachers" / f"{role}-{key}"

    def teacher(self, role: str, train: bool = True) -> Path | None:
        """The teacher checkpoint for `role`, trained once per config when a student run needs it (train=True);
        with train=False only its record is looked up (for the report), and None is returned."""
        cfg, key, run_dir = self.teacher_key(role)
        ckpt = run_dir / "last.pt"
        if train and self.ready_teachers.get(role) == key:
            return ckpt
        known = self.teacher_records.get(role)
        if not train and known is not None and known.get("key") == key:
            return None
        measured = self.measured(cfg)
        if train:  # the checkpoint is needed: only this run directory's own record vouches for it (ready_teachers)
            record = self.finished(cfg, key, measured, run_dir, {}) if ckpt.exists() else None
        else:  # for the report: the record is enough, wherever it was measured on this machine
            record = self.finished(cfg, key, measured, run_dir, self.known_teachers)
        if record is None and train:
            print(f"\n== teacher ({role}): {self.configs[role]} ({cfg.model.backbone}), {cfg.train.epochs} epochs -> {run_dir}")
            record = self._train(self.starting_from(cfg, role), key, measured, run_dir, None, None)
            if record["status"] != "done":
                raise FtpdetError(f"{run_dir}: the {role} teacher failed to train: {record['error']}")
        if record is not None:
            record |= {"role": role, "config": self.configs[role], "backbone": cfg.model.backbone,
                       "params_m": round(self.params_m(cfg), 3)}
            self.teacher_records[role] = record
        if train:
            self.ready_teachers[role] = key
        return ckpt if train else None

    def run(self, spec: RunSpec) -> tuple[dict, str]:
        """Run one cell; returns its record (shared with any other cell of the same key) and how it was obtained:
        trained, reused (finished in an earlier invocation or in reused results) or shared (an earlier cell of this
        one had its key). The teacher trains only when a run that needs it trains."""
        data_overrides, data_fp = self.data_of(spec)
        cfg = self.config("student", spec.seed, (*spec.overrides, *data_overrides))
        teacher_key = None
        if spec.teacher:
            teacher_cfg, teacher_key, _ = self.teacher_key(spec.teacher)
            cfg = self.resolved(cfg, teacher_cfg)
        key = run_key(cfg, spec.method, teacher_key, data_fp, self._pretrain("student"))
        if key in self.records:
            return self.records[key], "shared"
        name = (spec.method or "student").replace("+", "_")
        run_dir = self.out / "runs" / f"{name}-s{spec.seed}-{key}"
        measured = self.measured(cfg)
        record, how = self.finished(cfg, key, measured, run_dir, self.known), "reused"
        if record is None:
            teacher_ckpt = self.teacher(spec.teacher) if spec.teacher else None
            cfg = self.starting_from(cfg, "student")
            record, how = self._train(cfg, key, measured, run_dir, teacher_ckpt, spec.method), "trained"
        elif spec.teacher:
            self.teacher(spec.teacher, train=False)  # its record, for the report
        record |= {"method": spec.method or "student", "overrides": list(spec.overrides), "seed": spec.seed,
                   "data": spec.data,
                   "teacher": spec.teacher, "teacher_config": self.configs[spec.teacher] if spec.teacher else None,
                   "student_config": self.configs["student"]}
        self.records[key] = record
        return record, how

    def __call__(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.prepare_data()
        probe = self.config("student", 0)
        student_convs = probe.model.num_convs
        teacher_convs = self.config("main", 0).model.num_convs
        specs = plan_runs(self.preset, student_convs, teacher_convs, self.only)
        if any(spec.data != "labeled" for spec in specs):
            self.prepare_unlabeled()
        planned = {spec.table for spec in specs}
        # Every table of the earlier sitting is kept. The tables this sitting runs start from the earlier rows, and
        # each run replaces its seed's entry as it lands: a sitting cut off midway leaves its own runs where it got
        # to and the earlier ones after that, never fewer records than before. At the end they hold this plan only.
        tables = {name: [row | {"keys": list(row["keys"])} for row in rows]
                  for name, rows in self.previous.get("tables", {}).items()}
        earlier = {r["key"]: r for r in self.previous.get("records", [])}
        self.kept_records = list(earlier.values())
        landed: set[tuple[str, str, int]] = set()
        for i, spec in enumerate(specs, 1):
            where = f"[{i}/{len(specs)}] {spec.table}: {spec.label}, seed {spec.seed}"
            print(f"\n== {where}" + (f", teacher {spec.teacher}" if spec.teacher else ""))
            record, how = self.run(spec)
            note = {"trained": f"{record['wall_seconds']:.0f} s", "reused": "reused", "shared": "same run as above"}[how]
            outcome = f"AP {record['AP']:.2f}" if record["status"] == "done" else f"FAILED: {record['error']}"
            print(f"   {outcome} ({note}; {(time.perf_counter() - t0) / 60:.1f} min so far)")
            rows = tables.setdefault(spec.table, [])
            row = next((r for r in rows if r["label"] == spec.label), None)
            if row is None:
                row = {"label": spec.label, "method": spec.method or "student", "teacher": spec.teacher,
                       "overrides": list(spec.overrides), "keys": []}
                rows.append(row)
            seeds = [(self.records.get(k) or earlier.get(k, {})).get("seed") for k in row["keys"]]
            if spec.seed in seeds:
                row["keys"][seeds.index(spec.seed)] = record["key"]
            else:
                row["keys"].append(record["key"])
            landed.add((spec.table, spec.label, spec.seed))
            self.save(tables)
        for name in planned:  # finished: the planned tables hold exactly this sitting's runs
            for row in tables[name]:
                row["keys"] = [k for k in row["keys"]
                               if k in self.records and (name, row["label"], self.records[k]["seed"]) in landed]
            tables[name] = [row for row in tables[name] if row["keys"]]
        return self.save(tables)

    def variant(self, method: str, overrides: tuple[str, ...], seeds: int, base: tuple[str, ...] = (),
                teacher: str = "main", against: tuple[str, ...] = ()) -> list[dict[str, Any]]:
        """One method with config overrides against the same method without them (at its defaults, or with `base`
        overrides applied to both sides), paired over seeds 0..seeds-1, with the benchmark's teacher (`main` or
        `hetero`), schedule and seeds; runs already in `out` are reused. For trying a change before it becomes a
        table or a default: one row per seed with both APs and their difference, and the plain student's AP at
        that seed (the variant's gain is what a user gets). `against`: other methods at their defaults, paired at
        the same seeds (e.g. the best baseline a change is meant to overtake), each row's `against` {method: AP}."""
        self.prepare_data()
        rows = []
        label = " ".join(overrides)
        for seed in range(seeds):
            print(f"\n== {method} {label}, seed {seed} (and without it, paired)")
            new, _ = self.run(RunSpec("variant", label, method, seed, teacher, (*base, *overrides)))
            base_rec, _ = self.run(RunSpec("variant", "base", method, seed, teacher, base))
            student, _ = self.run(RunSpec("variant", "student", None, seed))
            others = {m: self.run(RunSpec("variant", m, m, seed, teacher))[0] for m in against}
            failed = next((r for r in (new, base_rec, student, *others.values()) if r["status"] != "done"), None)
            if failed is not None:
                raise FtpdetError(f"{failed['run_dir']}: run failed: {failed['error']}")
            rows.append({"seed": seed, "AP": new["AP"], "base_AP": base_rec["AP"], "student_AP": student["AP"],
                         "difference": round(new["AP"] - base_rec["AP"], 3),
                         "gain": round(new["AP"] - student["AP"], 3),
                         "against": {m: r["AP"] for m, r in others.items()}})
        return rows

    def results(self, tables: dict[str, list[dict]]) -> dict[str, Any]:
        p = self.preset
        listed = {key for rows in tables.values() for row in rows for key in row["keys"]}
        merged = {r["key"]: r for r in self.kept_records if r["key"] in listed} | self.records
        records = [self._with_ratio(r, merged) for r in merged.values()]
        return {
            "version": RESULTS_VERSION,
            "preset": p.name,
            "command": self.command,
            "date": date.today().isoformat(),
            "machine": self.machine,
            "python": platform.python_version(),
            "data": {"root": str(self.data_root), "builtin": self.user_data is None,
                     "fingerprint": {"train": self.train_fp, "val": self.val_fp},
                     "dataset": self.dataset if self.user_data is None else None,
                     "num_train": p.num_train if self.user_data is None else None,
                     "num_val": p.num_val if self.user_data is None else None, "image_size": p.image_size,
                     **({"num_unlabeled": self.num_unlabeled, "unlabeled_ratio": p.unlabeled_ratio}
                        if self.num_unlabeled is not None else {})},
            "schedule": {"teacher_epochs": p.teacher_epochs, "student_epochs": p.student_epochs,
                         "pretrain_epochs": p.pretrain_epochs, "pretrain_num_train": p.pretrain_num_train,
                         "eval_every": p.eval_every, "seeds": p.seeds, "extra_seeds": p.extra_seeds,
                         "ablation_seeds": p.ablation_seeds, "hetero_seeds": p.hetero_seeds},
            "configs": dict(self.configs),
            "commit": git_commit(),
            "student_params_m": round(self.params_m(self.config("student", 0)), 3),
            # teachers this sitting did not look up (its parts did not need them) keep an earlier sitting's record
            "teachers": {**self.previous.get("teachers", {}), **self.teacher_records},
            "pretrain": {**self.previous.get("pretrain", {}), **self.pretrain_records},
            "records": records,
            "tables": tables,
            "precisions": self._precisions,
        }

    def _with_ratio(self, record: dict, records: dict[str, dict]) -> dict:
        """step_time_ratio: this run's seconds per step over the plain student's at the same seed (1 for it).
        Runs train one after another on a possibly busy machine: `ftpdet bench speed` is the careful measure."""
        base = next((r for r in records.values() if r.get("method") == "student" and r.get("seed") == record.get("seed")
                     and r["status"] == "done"), None)
        if record["status"] == "done" and base is not None:
            return record | {"step_time_ratio": round(record["seconds_per_step"] / base["seconds_per_step"], 3)}
        return record

    def params_m(self, cfg: Config) -> float:
        """Parameters (millions) of cfg's detector, counted once per model config."""
        from ftpdet.models.detector import build_detector

        key = cfg.model.model_dump_json()
        if key not in self._params:
            self._params[key] = sum(p.numel() for p in build_detector(cfg.model, self.num_classes).parameters()) / 1e6
        return self._params[key]

    def save(self, tables: dict[str, list[dict]]) -> dict[str, Any]:
        results = self.results(tables)
        self.out.mkdir(parents=True, exist_ok=True)
        for path in (self.out / "results.json", *([self.mirror] if self.mirror is not None else [])):
            write_json(path, results)
        return results




def trained_pair(bench_dir: str | Path) -> tuple[Path, Path]:
    """(main teacher, seed-0 plain student) checkpoints of a finished accuracy benchmark, for `bench speed`."""
    path = Path(bench_dir) / "results.json"
    if not path.is_file():
        raise DatasetError(f"{path}: not found; run `ftpdet bench accuracy --out {bench_dir}` first")
    results = json.loads(path.read_text())
    student = next((r for r in results["records"] if r.get("method") == "student" and r.get("seed") == 0
                    and r["status"] == "done"), None)
    if "main" not in results["teachers"] or student is None:
        raise DatasetError(f"{path}: holds no finished main teacher and seed-0 student yet")
    return Path(results["teachers"]["main"]["run_dir"]) / "last.pt", Path(student["run_dir"]) / "last.pt"
