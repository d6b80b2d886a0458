"""The benchmark's numbers: look-ups over a results JSON and the statistics of paired seeds.

Pure functions of data: no formatting, no plotting. Seeds are paired (seed k gives every method the same student
initialisation, data order and augmentation), so methods are compared by their per-seed differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    arr = np.asarray(values, dtype=float)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def paired(a: dict[int, float], b: dict[int, float]) -> list[float]:
    """Per-seed differences a - b over the seeds both have."""
    return [a[s] - b[s] for s in sorted(a) if s in b]


def ci95(diffs: list[float]) -> tuple[float, float, float]:
    """Mean of the paired differences and its 95% t-interval over seeds: (mean, low, high). One seed has no
    interval: (mean, nan, nan)."""
    m, s = mean_std(diffs)
    if len(diffs) < 2:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.975, len(diffs) - 1)) * s / np.sqrt(len(diffs))
    return m, m - half, m + half


def ratio_ci95(ratios: list[float]) -> tuple[float, float, float]:
    """Paired ratios (one per round, each measured in one sitting): their geometric mean and its 95% t-interval,
    computed on the log ratios and exponentiated, so a ratio and its inverse get mirrored intervals."""
    m, low, high = ci95([float(np.log(r)) for r in ratios])
    return float(np.exp(m)), float(np.exp(low)), float(np.exp(high))


def resolved(diffs: list[float]) -> bool:
    """The report's rule for 'a difference': the 95% interval of the paired differences excludes 0 (so at least
    two seeds). 'A beats B' means the interval of A - B lies above 0."""
    _, low, high = ci95(diffs)
    return bool(low > 0 or high < 0)


# The speed benchmark's step kinds on mixed batches (labeled images + as many unlabeled ones), and their floor's parts.
WITH_UNLABELED = " (+ unlabeled)"
FLOOR_PARTS = ("student step", "teacher forward")


def round_ratios(samples: dict[str, list[float]]) -> dict[str, tuple[float, float, float]]:
    """Each step kind's cost against its floor, paired by round: in round r, its milliseconds over the floor's
    (student step + teacher forward, on mixed batches for a kind on mixed batches) in the same round, so load that
    drifts between rounds cancels. (geometric mean, low, high): the 95% t-interval over rounds of the log ratios,
    exponentiated; a kind is within a budget x when `high` < x. Floor parts themselves are left out."""
    out = {}
    for kind, times in samples.items():
        suffix = WITH_UNLABELED if kind.endswith(WITH_UNLABELED) else ""
        parts = [samples.get(f"{p}{suffix}") for p in FLOOR_PARTS]
        if kind in {f"{p}{suffix}" for p in FLOOR_PARTS} or any(x is None for x in parts):
            continue
        out[kind] = ratio_ci95([t / (a + b) for t, a, b in zip(times, *parts)])
    return out


def closure(method: dict[int, float], base: dict[int, float], teacher: float | None) -> float | None:
    """Gap closure from the means over the paired seeds: (method - base) / (teacher - base)."""
    d = paired(method, base)
    if not d or teacher is None:
        return None
    base_mean = float(np.mean([base[s] for s in sorted(method) if s in base]))
    gap = teacher - base_mean
    return float(np.mean(d)) / gap if gap > 0 else None


class Results:
    """Look-ups over an accuracy results JSON: rows of a table, their records in seed order."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.by_key = {r["key"]: r for r in data["records"]}

    def rows(self, table: str) -> list[dict]:
        return self.data["tables"].get(table, [])

    def row(self, table: str, label: str) -> dict | None:
        return next((r for r in self.rows(table) if r["label"] == label), None)

    def records(self, row: dict | None) -> list[dict]:
        """Finished records of a row, one per seed."""
        if row is None:
            return []
        return [self.by_key[k] for k in row["keys"] if k in self.by_key and self.by_key[k]["status"] == "done"]

    def values(self, row: dict | None, metric: str = "AP") -> dict[int, float]:
        return {r["seed"]: r[metric] for r in self.records(row)}

    def mean(self, table: str, label: str) -> float | None:
        """Mean AP of a row over its seeds (None without finished runs)."""
        values = self.values(self.row(table, label))
        return mean_std(list(values.values()))[0] if values else None

    def teacher_ap(self, role: str) -> float | None:
        t = self.data["teachers"].get(role)
        return t["AP"] if t else None
