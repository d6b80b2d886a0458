"""ftpdet: small, fast dense detectors by distilling a GFL teacher into a small student.

Importing the package is light (no torch): the API functions import what they need when called, and
`ftpdet.Config` / `ftpdet.load_config` are looked up on first use, so `ftpdet --help` answers at once.
"""

from typing import Any

from ftpdet.api import convert_dataset, distill, evaluate_checkpoint, export, import_mmdet, predict, train
from ftpdet.provenance import version

__version__ = version()
__all__ = ["Config", "load_config", "train", "distill", "evaluate_checkpoint", "predict", "export", "convert_dataset",
           "import_mmdet", "__version__"]


def __getattr__(name: str) -> Any:
    if name in ("Config", "load_config"):
        from ftpdet import config

        return getattr(config, name)
    raise AttributeError(f"module 'ftpdet' has no attribute {name!r}")
