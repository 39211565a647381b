"""Time budgets: run work under a deadline that cancels it and raises `ExecutionTimeout`.

`run_on_past_timeout` is the injected bug `no-cancel-on-timeout` (service/bugs.py): it lets the
caller's deadline answer while the work itself keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from typing import TypeVar

from service.errors import ExecutionTimeout

T = TypeVar("T")

#: The plan's ceiling for any single pattern execution.
MAX_EXECUTION_S = 5.0

#: How much earlier than the enclosing deadline a dependency call must give up, so that a lost
#: dependency is reported as itself (naming the database) rather than as the caller's timeout.
DEPENDENCY_MARGIN_S = 0.15
#: The shortest wait a dependency call is given even when the enclosing budget is nearly spent.
MIN_DEPENDENCY_WAIT_S = 0.05

#: When the innermost enclosing budget ends (`time.monotonic()`), if any (e.g. a pattern's).
_ENCLOSING_DEADLINE: ContextVar[float | None] = ContextVar("tmws_enclosing_deadline", default=None)


@contextlib.contextmanager
def enclosing_deadline(budget_s: float) -> Iterator[None]:
    """Make `budget_s` from now the deadline that nested dependency calls fit inside."""
    ends = time.monotonic() + budget_s
    outer = _ENCLOSING_DEADLINE.get()
    token = _ENCLOSING_DEADLINE.set(ends if outer is None else min(outer, ends))
    try:
        yield
    finally:
        _ENCLOSING_DEADLINE.reset(token)


def dependency_wait(own_s: float) -> float:
    """A dependency call's wait: its own timeout, cut to end `DEPENDENCY_MARGIN_S` before the
    enclosing deadline. A database that stops answering in the middle of a pattern then fails
    as the database (-32001/-32002 naming it, the breaker told), not as the pattern's timeout,
    which would blame and demote the pattern for an outage."""
    ends = _ENCLOSING_DEADLINE.get()
    if ends is None:
        return own_s
    left = ends - time.monotonic() - DEPENDENCY_MARGIN_S
    return min(own_s, max(MIN_DEPENDENCY_WAIT_S, left))


async def run_with_timeout(work: Awaitable[T], timeout_s: float, *, what: str) -> T:
    """Await `work`; past `timeout_s` it is cancelled (its `finally` blocks free connections)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await work
    except TimeoutError:
        raise ExecutionTimeout(
            f"{what} exceeded its {timeout_s:g}s budget and was cancelled",
            {"timeout_s": timeout_s, "what": what},
        ) from None


#: Work left running by `run_on_past_timeout` (the loop keeps only weak references to tasks).
_RUNAWAY: set[asyncio.Task[object]] = set()


async def run_on_past_timeout(work: Awaitable[T]) -> T:
    """Await `work`, but if the caller is cancelled (its timeout), the work is not: a leak."""
    task: asyncio.Task[T] = asyncio.ensure_future(work)
    _RUNAWAY.add(task)  # type: ignore[arg-type]
    task.add_done_callback(_RUNAWAY.discard)  # type: ignore[arg-type]
    return await asyncio.shield(task)


class Deadline:
    """A budget passed down a call chain so nested steps share one limit."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.budget_s = budget_s
        self.expires_at = clock() + budget_s

    def remaining(self) -> float:
        """Seconds left (never negative)."""
        return max(0.0, self.expires_at - self._clock())

    @property
    def expired(self) -> bool:
        return self.remaining() <= 0.0

    def clamp(self, timeout_s: float) -> float:
        """The smaller of a step's own timeout and what is left of the budget."""
        return min(timeout_s, self.remaining())
