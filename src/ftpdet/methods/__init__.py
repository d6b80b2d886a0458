"""Distillation methods behind one interface (methods/base.py). Names map to classes in one visible table.

Adding a method: its file (a `Method` with its `Config`, `weights` and `forward`) plus one line in METHODS;
the `distill.<name>` config section, the name check and the weight table follow from this table.
"""

from __future__ import annotations

import difflib

from torch import nn

from ftpdet.errors import ConfigError
from ftpdet.methods.base import Method
from ftpdet.methods.bckd import BCKD
from ftpdet.methods.crosskd import CrossKD
from ftpdet.methods.ftpd import FTPD
from ftpdet.methods.kd import KD
from ftpdet.methods.ld import LD
from ftpdet.methods.pkd import PKD
from ftpdet.methods.pseudo import Pseudo

METHODS: dict[str, type[Method]] = {"kd": KD, "ld": LD, "crosskd": CrossKD, "bckd": BCKD, "pkd": PKD, "ftpd": FTPD,
                                    "pseudo": Pseudo}
# Controls, not distillation methods: they need unlabeled images (data.unlabeled) to do anything.
NEEDS_UNLABELED = ("pseudo",)


def check_method(spec: str) -> list[str]:
    """'ftpd+pkd' -> ['ftpd', 'pkd']; ValueError naming an unknown method with its closest match."""
    names = [n.strip().lower() for n in str(spec).split("+") if n.strip()]
    unknown = [n for n in names if n not in METHODS]
    if not names or unknown:
        name = unknown[0] if unknown else str(spec)
        match = difflib.get_close_matches(name, list(METHODS), n=1)
        hint = f" (did you mean '{match[0]}'?)" if match else ""
        raise ValueError(f"unknown method {name!r}{hint}; choose from {', '.join(METHODS)} or combine them with '+', "
                         "e.g. ftpd+pkd")
    if len(set(names)) != len(names):
        raise ValueError("a method is listed twice")
    return names


def parse_method(spec: str) -> list[str]:
    """check_method, failing as a ConfigError that names the setting."""
    try:
        return check_method(spec)
    except ValueError as e:
        raise ConfigError(f"distill.method {spec!r}: {e}") from None


def build_methods(spec: str, cfg, student, teacher) -> nn.ModuleDict:
    """The methods of `spec`, each built from its section of the distill config `cfg`."""
    methods = nn.ModuleDict()
    for name in parse_method(spec):
        try:
            methods[name] = METHODS[name](getattr(cfg, name), student=student, teacher=teacher)
        except ValueError as e:
            raise ConfigError(f"distill.{name}: {e}") from None
    return methods


def method_weights(spec: str, cfg) -> dict[str, float]:
    """{term name: weight} of every term the methods of `spec` may return, from the distill config `cfg`."""
    weights: dict[str, float] = {}
    for name in parse_method(spec):
        weights |= METHODS[name].weights(getattr(cfg, name))
    return weights
