"""Ground floor: where a number came from. The machine, the code's commit and the package version go into
every report and export: timings mean little without the machine, results little without the code."""

from __future__ import annotations

import platform
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


def machine_description() -> str:
    """CPU model and thread count (or the GPU), for reports: timings mean little without the machine."""
    import torch  # here, not at the top: the package's import (and `ftpdet --help`) stays free of torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}"
