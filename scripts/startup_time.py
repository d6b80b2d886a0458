"""What a process of ours pays to start, with and without the bytecode of its imports.

Every `ftpdet` command, every test that runs one and every DDP rank is a new Python process that imports torch and
torchvision (which imports torch._dynamo: thousands of modules). `make install` writes their bytecode once (the
Makefile's COMPILE_IMPORTS); without it, as where PYTHONDONTWRITEBYTECODE is set and pip ran with --no-compile,
every process compiles them from source. This times both, in turn, in fresh processes:

- `bytecode`: as the venv is now (run `make install` first);
- `source`: the same imports with PYTHONPYCACHEPREFIX pointing at an empty folder and PYTHONDONTWRITEBYTECODE=1, so
  no bytecode is found or written: what each process paid before.

    .venv/bin/python scripts/startup_time.py [--rounds 5] [--imports torch torchvision]

It prints the machine, each round's seconds, the median of each mode, and the source / bytecode ratio paired by round
(the geometric mean of the per-round ratios and its 95% t-interval over rounds, as the speed benchmark pairs its step
costs: load that drifts between rounds cancels). About 20 s per round on 2 cores.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

from ftpdet.bench.stats import ratio_ci95
from ftpdet.provenance import machine_description


def time_import(imports: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import " + ", ".join(imports)], env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="at least 2, for an interval")
    parser.add_argument("--imports", nargs="+", default=["torch", "torchvision"])
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be at least 2: one round has no interval")
    with tempfile.TemporaryDirectory() as empty:
        modes = {
            "bytecode": {**os.environ},
            "source": {**os.environ, "PYTHONPYCACHEPREFIX": empty, "PYTHONDONTWRITEBYTECODE": "1"},
        }
        seconds: dict[str, list[float]] = {mode: [] for mode in modes}
        print(f"{machine_description('cpu')}: import {', '.join(args.imports)} in a fresh process, the two modes in turn")
        for r in range(args.rounds):
            for mode, env in modes.items():
                seconds[mode].append(time_import(args.imports, env))
            print(f"round {r + 1}: " + ", ".join(f"{m} {s[-1]:.2f} s" for m, s in seconds.items()), flush=True)
    med = {mode: statistics.median(s) for mode, s in seconds.items()}
    print("| mode | median (s) |\n|---|---:|")
    for mode, m in med.items():
        print(f"| {mode} | {m:.2f} |")
    ratio, low, high = ratio_ci95([s / b for s, b in zip(seconds["source"], seconds["bytecode"], strict=True)])
    print(f"source / bytecode, paired by round: {ratio:.2f}x [{low:.2f}, {high:.2f}] (95% interval, {args.rounds} rounds)")


if __name__ == "__main__":
    main()
