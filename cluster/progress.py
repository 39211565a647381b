"""Live progress per phase (bring-up, warm-up, load, drain, gather): tqdm bars on a terminal, lines otherwise."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from typing import IO

from tqdm import tqdm

log = logging.getLogger(__name__)

PHASES = ("bring-up", "warm-up", "load", "drain", "gather")


class PhaseProgress:
    """One phase's counter: `advance` moves it, `set_postfix` shows live figures."""

    def __init__(self, name: str, total: int | None, bar: tqdm | None, stream: IO[str]) -> None:
        self.name = name
        self.total = total
        self.done = 0
        self._bar = bar
        self._stream = stream
        self._last_line = 0.0
        self.started = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.update_to(self.done + n)

    def update_to(self, done: int, **figures: object) -> None:
        """Set the absolute count (and optional figures such as rps or errors)."""
        delta, self.done = done - self.done, done
        if self._bar is not None:
            if figures:
                self._bar.set_postfix(figures, refresh=False)
            self._bar.update(delta)
            return
        now = time.monotonic()
        if now - self._last_line >= 2.0 or (self.total is not None and done >= self.total):
            self._last_line = now
            extra = " ".join(f"{k}={v}" for k, v in figures.items())
            total = f"/{self.total}" if self.total is not None else ""
            print(f"[{self.name}] {done}{total} {extra}".rstrip(), file=self._stream, flush=True)

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self.started


class Progress:
    """Progress display for one run; `enabled=False` keeps it silent (tests)."""

    def __init__(
        self, enabled: bool = True, stream: IO[str] | None = None, bars: bool | None = None
    ) -> None:
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.bars = self.stream.isatty() if bars is None else bars
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(
        self, name: str, total: int | None = None, unit: str = "req"
    ) -> Iterator[PhaseProgress]:
        """Show one phase while the block runs; its wall time lands in `timings`."""
        bar = None
        if self.enabled and self.bars:
            bar = tqdm(total=total, desc=f"{name:>8}", unit=unit, file=self.stream, leave=True)
        elif self.enabled:
            print(f"[{name}] start", file=self.stream, flush=True)
        current = PhaseProgress(name, total, bar, self.stream if self.enabled else _Null())
        try:
            yield current
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + current.elapsed_s
            if bar is not None:
                bar.close()
            elif self.enabled:
                print(f"[{name}] done in {current.elapsed_s:.1f}s", file=self.stream, flush=True)
            log.info("phase %s took %.1fs", name, current.elapsed_s)


class _Null:
    def write(self, _text: str) -> int:
        return 0

    def flush(self) -> None:
        return None
