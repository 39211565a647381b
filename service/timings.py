"""Where one request's time went, stage by stage, without threading a timer through every call.

The engine opens a `StageTimer` for a request (`timed_request`); code deep below it (the
embedder, the executors) adds to the current one with `add_stage`, which is a no-op when no
request is being timed. Tasks started inside the request copy its context and so add to the same
timer; a stage reached twice (two embeds) adds up.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from contextvars import ContextVar

_CURRENT: ContextVar[StageTimer | None] = ContextVar("tmws_stage_timer", default=None)
#: perf_counter() when the transport read the frame of the request (request tasks copy it).
_RECEIVED: ContextVar[float | None] = ContextVar("tmws_frame_received", default=None)


def mark_received() -> None:
    """The transport read a frame now: what follows until the engine starts is `queue` time."""
    _RECEIVED.set(time.perf_counter())


class StageTimer:
    """Milliseconds per stage name, in the order stages were first reached."""

    def __init__(self) -> None:
        self.stages: dict[str, float] = {}

    def add(self, stage: str, ms: float) -> None:
        self.stages[stage] = self.stages.get(stage, 0.0) + ms

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.add(name, (time.perf_counter() - started) * 1000.0)

    def rounded(self, digits: int = 3) -> dict[str, float]:
        return {name: round(ms, digits) for name, ms in self.stages.items()}


def current() -> StageTimer | None:
    return _CURRENT.get()


def add_stage(stage: str, ms: float) -> None:
    """Add `ms` to `stage` of the request being timed, if any."""
    timer = _CURRENT.get()
    if timer is not None:
        timer.add(stage, ms)


@contextlib.contextmanager
def timed_stage(stage: str) -> Iterator[None]:
    """Time the body as `stage` of the request being timed, if any."""
    started = time.perf_counter()
    try:
        yield
    finally:
        add_stage(stage, (time.perf_counter() - started) * 1000.0)


@contextlib.contextmanager
def timed_request() -> Iterator[StageTimer]:
    """A fresh timer current for the body (nested requests get their own)."""
    timer = StageTimer()
    received = _RECEIVED.get()
    if received is not None:
        # Parse, the in-flight slot, task start, argument validation: the event loop's backlog.
        timer.add("queue", (time.perf_counter() - received) * 1000.0)
    token = _CURRENT.set(timer)
    try:
        yield timer
    finally:
        _CURRENT.reset(token)
