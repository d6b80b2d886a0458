"""train.amp / channels_last auto: the hardware's capability (ftpdet.hardware), the candidates it allows and the
choice among them (models/precision.py), and a run that resolves both models on the machine that runs it
(engine/run_precision.py): the line said at start, the warning on an emulated bf16, what config.yaml and the
checkpoint record. The timing is replaced by fixed numbers here, so each rule is tested under every capability,
whatever this machine has."""

import json
import os
import platform
import subprocess
import sys

import pytest
import torch
import yaml

from ftpdet.hardware import Capability
from ftpdet.models.precision import (Precision, candidates, choose, emulation_warning, resolve, time_candidates)
from tests.conftest import tiny_config

AVX2 = Capability("cpu", "AMD EPYC", "AVX2", False, 2, "2.14.1")
AVX512_NO_BF16 = Capability("cpu", "AMD EPYC", "AVX512", False, 2, "2.14.1")
AMX = Capability("cpu", "Intel Xeon", "AVX512+AMX", True, 2, "2.14.1")
A100 = Capability("cuda", "NVIDIA A100", "sm_80", True, 0, "2.14.1")
T4 = Capability("cuda", "Tesla T4", "sm_75", False, 0, "2.14.1")
F32, F32_CL, BF16, BF16_CL = Precision(), Precision("none", True), Precision("bf16"), Precision("bf16", True)


def fixed_timer(ms: dict[Precision, float], calls: list):
    def timer(model, options, batch, image_size, device, train):
        calls.append(list(options))
        return {p: ms[p] / 1000 for p in options}
    return timer


def test_candidates_follow_the_hardware():
    assert candidates(AVX2) == [F32, F32_CL]  # bf16 is never timed where it is emulated
    assert candidates(AVX512_NO_BF16) == [F32, F32_CL]
    assert candidates(AMX) == [F32, F32_CL, BF16, BF16_CL]
    assert candidates(A100) == [BF16, BF16_CL]
    assert candidates(T4) == [Precision("fp16"), Precision("fp16", True)]
    assert candidates(AVX2, amp="bf16") == [BF16, BF16_CL]  # an explicit setting is the only candidate for its part
    assert candidates(AMX, channels_last=False) == [F32, BF16]
    assert candidates(AMX, amp="none", channels_last=True) == [F32_CL]


def test_the_fastest_candidate_wins_only_by_a_margin():
    assert choose({F32: 1.0, F32_CL: 0.8, BF16: 0.6, BF16_CL: 0.62}) == BF16
    assert choose({F32: 1.0, F32_CL: 0.97}) == F32  # within 5% of float32: noise, float32 stays
    assert choose({F32: 1.0, F32_CL: 0.95}) == F32_CL


@pytest.mark.parametrize("cap,ms,expected", [
    (AVX2, {F32: 900, F32_CL: 715, BF16: 10221, BF16_CL: 9000}, F32_CL),  # the ResNet-18 on a Zen 3
    (AMX, {F32: 170, F32_CL: 178, BF16: 122, BF16_CL: 115}, BF16_CL),  # the same teacher with native bf16
    (AMX, {F32: 112, F32_CL: 100, BF16: 130, BF16_CL: 125}, F32_CL),  # a depthwise student: bf16 is slower
    (A100, {BF16: 50, BF16_CL: 40}, BF16_CL),
    (T4, {Precision("fp16"): 50, Precision("fp16", True): 52}, Precision("fp16")),
])
def test_resolution_under_each_capability(cap, ms, expected, tmp_path, monkeypatch):
    monkeypatch.setenv("FTPDET_CACHE_DIR", str(tmp_path))
    calls = []
    model = torch.nn.Conv2d(3, 4, 3)
    kw = dict(batch=2, image_size=32, device=torch.device("cpu"), train=True, timer=fixed_timer(ms, calls))
    got = resolve(model, {"backbone": "x"}, cap, "auto", "auto", **kw)
    assert got.precision == expected and got.how == "measured" and calls == [candidates(cap)]
    assert got.times_ms == {p.describe(): float(ms[p]) for p in candidates(cap)}
    again = resolve(model, {"backbone": "x"}, cap, "auto", "auto", **kw)  # remembered: not timed again
    assert again.precision == expected and again.how == "cached" and len(calls) == 1
    other = resolve(model, {"backbone": "y"}, cap, "auto", "auto", **kw)  # another model is timed for itself
    assert other.how == "measured" and len(calls) == 2
    elsewhere = resolve(model, {"backbone": "x"}, AVX512_NO_BF16 if cap != AVX512_NO_BF16 else AVX2, "auto", "auto",
                        **{**kw, "timer": fixed_timer({F32: 1, F32_CL: 2}, calls)})  # another machine: its own entry
    assert elsewhere.precision == F32 and elsewhere.how == "measured"
    (tmp_path / "precision.json").write_text("{not json")  # a damaged cache costs a measurement, nothing else
    assert resolve(model, {"backbone": "x"}, cap, "auto", "auto", **kw).how == "measured"


def test_explicit_settings_are_not_timed(tmp_path, monkeypatch):
    monkeypatch.setenv("FTPDET_CACHE_DIR", str(tmp_path))
    calls = []
    got = resolve(torch.nn.Conv2d(3, 4, 3), {}, AVX2, "bf16", False, batch=2, image_size=32,
                  device=torch.device("cpu"), train=True, timer=fixed_timer({}, calls))
    assert got.precision == BF16 and got.how == "set" and calls == []


def test_an_emulated_precision_is_named_with_its_cost():
    assert emulation_warning(AVX2, "bf16") == ("train.amp=bf16 on a CPU without native bf16 (AVX2): ~10x slower than "
                                               "float32 here (bf16 is emulated; docs/speed.md); use auto")
    assert "Tesla T4 (sm_75), which has no native bf16" in emulation_warning(T4, "bf16", "distill.teacher_amp")
    assert "fp16 on a CPU (AVX2)" in emulation_warning(AVX2, "fp16")
    for cap, amp in ((AMX, "bf16"), (A100, "bf16"), (T4, "fp16"), (AVX2, "none"), (AVX2, "auto")):
        assert emulation_warning(cap, amp) is None, (cap, amp)


def test_timing_leaves_the_model_and_the_random_stream_alone():
    """The measurement runs before training: it must not move BatchNorm statistics, weights or the seed's stream."""
    class Net(torch.nn.Module):  # takes uint8 images, as a detector does
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)

        def forward(self, x):
            return {"out": [self.bn(self.conv(x.float() / 255))]}

    model = Net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(0)
    times = time_candidates(model, [F32, F32_CL], batch=2, image_size=16, device=torch.device("cpu"), train=True,
                            rounds=2)
    after_timing = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after_timing, torch.rand(3))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert set(times) == {F32, F32_CL} and all(t > 0 for t in times.values())


def test_identity_names_the_isa_and_bf16():
    assert AVX2.describe() == "AMD EPYC, AVX2, no native bf16, 2 threads, torch 2.14.1"
    assert AMX.describe() == "Intel Xeon, AVX512+AMX, native bf16, 2 threads, torch 2.14.1"
    assert A100.describe() == "NVIDIA A100 (sm_80), native bf16, torch 2.14.1"
    assert AVX2.bf16_reason() == "this CPU has no native bf16: AVX2"


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AVX2 and oneDNN ISA switches are x86's")
def test_the_kernel_switches_make_any_x86_cpu_an_avx2_one():
    """`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2`: the identity and the bf16 verdict follow the kernels torch
    will run, not the CPU's flags (the flags of this machine may list avx512_bf16)."""
    code = "from ftpdet.hardware import capability; c = capability('cpu'); print(c.isa, c.native_bf16)"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["AVX2", "False"]


def test_runs_of_a_machine_that_differs_only_in_isa_are_refused(tmp_path, monkeypatch):
    """An AVX2 and an AVX-512 EPYC without native bf16 round differently: their runs never pair."""
    from ftpdet.bench import accuracy
    from ftpdet.bench.presets import PRESETS
    from ftpdet.errors import FtpdetError

    out = tmp_path / "bench"
    out.mkdir()
    record = {"key": "k1", "status": "done", "machine": AVX512_NO_BF16.describe()}
    (out / "results.json").write_text(json.dumps({"machine": AVX512_NO_BF16.describe(), "records": [record]}))
    monkeypatch.setattr(accuracy, "machine_description", AVX2.describe)
    with pytest.raises(FtpdetError, match="measured on AMD EPYC, AVX512, no native bf16, .* and this machine is "
                                          "AMD EPYC, AVX2, no native bf16"):
        accuracy.AccuracyBench(PRESETS["smoke"], out, progress=False)
    reused = tmp_path / "committed.json"
    reused.write_text((out / "results.json").read_text())
    bench = accuracy.AccuracyBench(PRESETS["smoke"], tmp_path / "fresh", progress=False, reuse=(reused,))
    assert bench.known == {}  # not reused
    monkeypatch.setattr(accuracy, "machine_description", AVX512_NO_BF16.describe)
    assert set(accuracy.AccuracyBench(PRESETS["smoke"], tmp_path / "fresh2", progress=False, reuse=(reused,)).known) == {"k1"}


def run_on(cap, monkeypatch, cfg, **kw):
    """A training run that sees `cap` as its hardware (the timing itself is real, on this CPU)."""
    from ftpdet.engine import run_precision
    from ftpdet.engine.train import train

    monkeypatch.setattr(run_precision, "capability", lambda device: cap)
    return train(cfg, progress=False, **kw)


def test_a_bf16_teacher_runs_in_float32_where_bf16_is_emulated(tiny_data, tmp_path, monkeypatch, capsys):
    """The teacher's checkpoint says bf16 (trained where it is native); on an AVX2 CPU the distillation runs it, and
    the student, in float32, says so in one line, and records it in config.yaml and the checkpoint."""
    from ftpdet.checkpoint import load_checkpoint

    teacher = run_on(AMX, monkeypatch, tiny_config(tiny_data, tmp_path / "t", "train.epochs=1", "train.amp=bf16"))
    assert load_checkpoint(teacher.out_dir / "last.pt")["config"]["train"]["amp"] == "bf16"
    capsys.readouterr()
    run = run_on(AVX2, monkeypatch, tiny_config(tiny_data, tmp_path / "s", "train.epochs=1"),
                 teacher=teacher.out_dir / "last.pt", method="kd")
    out, err = capsys.readouterr()
    line = next(ln for ln in out.splitlines() if ln.startswith("precision:"))
    assert line.startswith("precision: student float32") and ", teacher float32" in line
    assert "(this CPU has no native bf16: AVX2; " in line and "warning" not in err
    ckpt = load_checkpoint(run.out_dir / "last.pt")
    assert ckpt["precision"]["machine"] == AVX2.describe()
    assert ckpt["precision"]["teacher"]["amp"] == ckpt["precision"]["student"]["amp"] == "none"
    saved = yaml.safe_load((run.out_dir / "config.yaml").read_text())
    assert saved["train"]["amp"] == saved["distill"]["teacher_amp"] == "none"
    assert saved["train"]["channels_last"] == ckpt["precision"]["student"]["channels_last"]  # resolved, not auto
    assert isinstance(saved["distill"]["teacher_channels_last"], bool)


def test_a_forced_bf16_runs_after_one_warning(tiny_data, tmp_path, monkeypatch, capsys):
    run = run_on(AVX2, monkeypatch, tiny_config(tiny_data, tmp_path / "s", "train.epochs=1", "train.amp=bf16",
                                                "train.channels_last=false"))
    err = capsys.readouterr().err
    warnings = [ln for ln in err.splitlines() if ln.startswith("warning:")]
    assert warnings == ["warning: train.amp=bf16 on a CPU without native bf16 (AVX2): ~10x slower than float32 here "
                        "(bf16 is emulated; docs/speed.md); use auto"]
    assert yaml.safe_load((run.out_dir / "config.yaml").read_text())["train"]["amp"] == "bf16"  # it still runs
    run_on(AMX, monkeypatch, tiny_config(tiny_data, tmp_path / "n", "train.epochs=1", "train.amp=bf16"))
    assert "warning" not in capsys.readouterr().err  # native: nothing to say


def test_fp16_on_a_gpu_without_native_bf16_trains_with_a_grad_scaler(tiny_data, tmp_path, monkeypatch):
    """On a T4 auto takes fp16, and fp16 trains with a GradScaler (its state is checkpointed for --resume). The
    CUDA capability is simulated; the run itself is on this CPU, where fp16 autocast works, slowly."""
    from ftpdet.checkpoint import load_checkpoint

    run = run_on(T4, monkeypatch, tiny_config(tiny_data, tmp_path / "s", "train.epochs=1"))
    ckpt = load_checkpoint(run.out_dir / "last.pt")
    assert ckpt["precision"]["student"]["amp"] == "fp16" and "grad_scaler" in ckpt


def test_a_resumed_run_keeps_what_it_ran_at_on_the_same_machine(tiny_data, tmp_path, monkeypatch):
    """Exact resume: the choice comes back from the checkpoint (here the cache is emptied in between, so timing
    again could choose otherwise); on another machine it is resolved anew."""
    from ftpdet.checkpoint import load_checkpoint
    from ftpdet.engine.train import train

    monkeypatch.setenv("FTPDET_CACHE_DIR", str(tmp_path / "cache"))
    cfg = tiny_config(tiny_data, tmp_path / "s", "train.epochs=2")
    first = run_on(AVX2, monkeypatch, cfg, stop_after=1)
    chosen = load_checkpoint(first.out_dir / "last.pt")["precision"]["student"]
    (tmp_path / "cache" / "precision.json").unlink()
    resumed = train(cfg, resume=True, progress=False)  # the run_precision patch still says AVX2
    rec = load_checkpoint(resumed.out_dir / "last.pt")["precision"]
    assert rec["student"] == chosen and rec["how"]["student"] == "resumed"
