"""Ground floor: what the machine that runs this process can do fast. Precision follows it (models/precision.py:
bf16 only where it is native), and every report names it (provenance.py), because the same run is 10x slower, and
rounds differently, on a CPU that only emulates bf16.

Read from the kernels torch will actually run, not only from the CPU's flags: ATen's dispatch level
(`ATEN_CPU_CAPABILITY` can lower it) and oneDNN's (`ONEDNN_MAX_CPU_ISA` can); so
`ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2 ftpdet ...` makes an AVX-512 machine behave, and describe itself,
as an AVX2-only one.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Capability:
    """One device's identity for precision and provenance.

    device: "cpu" or "cuda". name: the CPU model or the GPU. isa: on a CPU, the vector level ATen dispatches to
    ("AVX2", "AVX512", "DEFAULT", ...), plus "+AMX" when oneDNN may use AMX tiles; on a GPU, "sm_XY" (its compute
    capability). native_bf16: bf16 math runs in hardware (AVX512-BF16 or AMX on a CPU, compute capability 8.0+ on a
    GPU), so bf16 autocast can be faster than float32; elsewhere it is emulated, ~10x slower on a CPU.
    """

    device: str
    name: str
    isa: str
    native_bf16: bool
    threads: int
    torch: str

    def describe(self) -> str:
        """One line for reports and benchmark records, e.g. `AMD EPYC, AVX2, no native bf16, 2 threads, torch
        2.14.1`. Benchmark runs are reused only where this line is identical."""
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        if self.device == "cuda":
            return f"{self.name} ({self.isa}), {bf16}, torch {self.torch}"
        return f"{self.name}, {self.isa}, {bf16}, {self.threads} threads, torch {self.torch}"

    def bf16_reason(self) -> str:
        """Why bf16 is or is not native here, for the one-line precision message."""
        if self.device == "cuda":
            return f"{self.name} ({self.isa}) {'runs' if self.native_bf16 else 'has no native'} bf16"
        return f"this CPU {'has' if self.native_bf16 else 'has no'} native bf16: {self.isa}"


def cpu_name() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def _onednn_allows(isa: str) -> bool:
    """Whether ONEDNN_MAX_CPU_ISA (unset: everything) lets oneDNN use `isa` ("AMX" or "AVX512_CORE_BF16")."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", os.environ.get("DNNL_MAX_CPU_ISA", "")).upper()
    if not cap or cap == "ALL":
        return True
    if isa == "AMX":
        return cap.startswith("AVX512_CORE_AMX")
    return cap.startswith(("AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX512_CORE_AMX", "AVX10_1_512"))


def cpu_capability() -> Capability:
    import torch  # here, not at the top: the package's import (and `ftpdet --help`) stays free of torch

    def probe(fn) -> bool:  # torch's private CPU probes; a build without one reports False (not native: safe)
        try:
            return bool(fn())
        except (AttributeError, RuntimeError):
            return False

    isa = torch.backends.cpu.get_cpu_capability()  # ATen's dispatch level, after ATEN_CPU_CAPABILITY
    amx = probe(lambda: torch.cpu._is_amx_tile_supported()) and _onednn_allows("AMX")
    hardware_bf16 = probe(lambda: torch.cpu._is_avx512_bf16_supported()) or amx
    # oneDNN runs the convolutions: it must be allowed to use AVX-512 at all, and the bf16 instructions in particular.
    onednn = probe(lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _onednn_allows("AVX512_CORE_BF16")
    native = hardware_bf16 and onednn and isa.startswith("AVX512")
    return Capability("cpu", cpu_name(), isa + ("+AMX" if amx and isa.startswith("AVX512") else ""), native,
                      torch.get_num_threads(), torch.__version__)


def cuda_capability(index: int = 0) -> Capability:
    import torch

    major, minor = torch.cuda.get_device_capability(index)
    return Capability("cuda", torch.cuda.get_device_name(index), f"sm_{major}{minor}", major >= 8, 0, torch.__version__)


def capability(device: str = "auto") -> Capability:
    """The capability of `device` ("cpu", "cuda", "cuda:N" or "auto": CUDA when available)."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        index = int(device.split(":", 1)[1]) if ":" in device else 0
        return cuda_capability(index)
    return cpu_capability()
