"""Progress of long loops: redrawn bars on a terminal, plain lines in a log file.

tqdm redraws its bar with carriage returns; written to a file (`make demo > log 2>&1`, a job scheduler's log) that
is megabytes of half-lines. When the stream is not a terminal, a loop instead prints one line when it ends and one
every `interval` seconds while it runs, so a long epoch still shows it is alive.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from tqdm import tqdm


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stderr if stream is None else stream
    return bool(getattr(stream, "isatty", lambda: False)())


class LineProgress:
    """tqdm's interface as far as ftpdet uses it (iterate, set_postfix, close), printing whole lines."""

    def __init__(self, iterable: Iterable, desc: str, total: int | None, initial: int, unit: str, interval: float,
                 stream: TextIO) -> None:
        self.iterable, self.desc, self.unit, self.interval, self.stream = iterable, desc, unit, interval, stream
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.n, self.start_n = initial, initial
        self.postfix: dict[str, Any] = {}
        self.t0 = self.last = time.perf_counter()
        self.closed = False

    def __iter__(self) -> Iterator:
        for item in self.iterable:
            yield item
            self.n += 1
            now = time.perf_counter()
            if now - self.last >= self.interval:
                self.last = now
                self._line()

    def set_postfix(self, postfix: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.postfix = {**(postfix or {}), **kwargs}

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start_n
        count = f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"
        rate = f", {done / elapsed:.2f} {self.unit}/s" if elapsed > 0 and done else ""
        post = "".join(f", {k}={v}" for k, v in self.postfix.items())
        print(f"{self.desc}: {count} {self.unit} in {elapsed:.1f} s{rate}{post}", file=self.stream, flush=True)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.n > self.start_n:
                self._line()


def progress_bar(iterable: Iterable, *, desc: str, total: int | None = None, initial: int = 0, unit: str = "it",
             enabled: bool = True, lines: bool = True, interval: float = 60.0,
             stream: TextIO | None = None) -> tqdm | LineProgress | Iterable:
    """A bar on a terminal; off the terminal, `lines=True` prints a line at the end (and every `interval` s), and
    `lines=False` prints nothing (a loop whose result is printed anyway, e.g. evaluation). `enabled=False`: silent."""
    stream = sys.stderr if stream is None else stream
    if enabled and is_terminal(stream):
        return tqdm(iterable, desc=desc, total=total, initial=initial, unit=unit, leave=False, file=stream)
    if enabled and lines:
        return LineProgress(iterable, desc, total, initial, unit, interval, stream)
    return tqdm(iterable, disable=True)  # iterates, and accepts set_postfix / close as no-ops


def progress_write(message: str) -> None:
    """Print a line without breaking a bar being drawn (tqdm.write clears and redraws it)."""
    tqdm.write(message)
