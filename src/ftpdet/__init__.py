"""ftpdet: small, fast dense detectors by distilling a GFL teacher into a small student."""

import sys
import types

from ftpdet.api import distill, evaluate_checkpoint, export, predict, train
from ftpdet.config import Config, load_config

__version__ = "0.1.0"
__all__ = ["Config", "load_config", "train", "distill", "evaluate_checkpoint", "predict", "export", "__version__"]


class _Package(types.ModuleType):
    """`ftpdet.distill` and `ftpdet.export` each name two things: an API function (`ftpdet.distill(config,
    teacher=...)`, `ftpdet.export(checkpoint, out)`) and a module (src/ftpdet/distill/, src/ftpdet/export.py).
    Importing such a module makes the import system set it as an attribute of this package, which replaced the
    function (a user's next call failed). An API function is never replaced by a module; code that needs the
    module imports from it (`from ftpdet.distill import METHODS`), which is unaffected."""

    def __setattr__(self, name: str, value: object) -> None:
        if isinstance(value, types.ModuleType) and isinstance(getattr(self, name, None), types.FunctionType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
