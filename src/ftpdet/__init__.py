"""ftpdet: small, fast dense detectors by distilling a GFL teacher into a small student."""

from ftpdet.api import distill, evaluate_checkpoint, export, predict, train
from ftpdet.config import Config, load_config

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "train", "distill", "evaluate_checkpoint", "predict", "export", "__version__"]
