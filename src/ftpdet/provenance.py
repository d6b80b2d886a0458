"""Ground floor: where a number came from. The machine, the code's commit and the package version go into
every report and export: timings mean little without the machine, results little without the code."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path


def version() -> str:
    """The installed ftpdet version (pyproject.toml is the one place it is written)."""
    try:
        return metadata.version("ftpdet")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "0+unknown"


def git_commit() -> str | None:
    """Short commit hash of the source tree this code runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).parent)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_description(device: str = "auto") -> str:
    """The machine's identity for reports, exports and benchmark records: the CPU model, the vector level its kernels
    run at (AVX2 / AVX512, +AMX), whether bf16 is native, threads and torch version; or the GPU and its compute
    capability. Timings mean little without it, and a run's weights depend on it (ftpdet.hardware)."""
    from ftpdet.hardware import capability

    return capability(device).describe()
