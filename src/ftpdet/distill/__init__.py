"""Distillation methods behind one interface. Names map to classes in one visible table."""

from __future__ import annotations

from torch import nn

from ftpdet.config import DistillConfig
from ftpdet.distill.bckd import BCKD
from ftpdet.distill.crosskd import CrossKD
from ftpdet.distill.ftpd import FTPD
from ftpdet.distill.kd import KD
from ftpdet.distill.ld import LD
from ftpdet.distill.pkd import PKD
from ftpdet.errors import ConfigError

METHODS: dict[str, type[nn.Module]] = {"kd": KD, "ld": LD, "crosskd": CrossKD, "bckd": BCKD, "pkd": PKD, "ftpd": FTPD}


def parse_method(spec: str) -> list[str]:
    """'ftpd+pkd' -> ['ftpd', 'pkd'], each checked against METHODS."""
    names = [n.strip().lower() for n in spec.split("+") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown:
        raise ConfigError(f"distill.method {spec!r}: unknown method {unknown[0] if unknown else spec!r}; "
                          f"choose from {', '.join(METHODS)} or combine them with '+', e.g. ftpd+pkd")
    if len(set(names)) != len(names):
        raise ConfigError(f"distill.method {spec!r}: a method is listed twice")
    return names


def build_methods(spec: str, cfg: DistillConfig, student, teacher) -> nn.ModuleDict:
    methods = nn.ModuleDict()
    for name in parse_method(spec):
        try:
            methods[name] = METHODS[name](getattr(cfg, name), student=student, teacher=teacher)
        except ValueError as e:
            raise ConfigError(f"distill.{name}: {e}") from None
    return methods
