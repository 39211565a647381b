"""Circuit breaker: closed / open / half-open, with an injectable clock so it tests without sleeps.

    closed --(failure_threshold consecutive failures)--> open
    open --(reset_timeout_s elapsed, checked lazily)--> half-open
    half-open --(a trial call succeeds)--> closed
    half-open --(a trial call fails)--> open
    any --(trip())--> open ; any --(reset())--> closed

Only exceptions of `failure_types` count (a dead dependency); anything else (a bug, a
`NotFound`) passes through untouched and says nothing about the dependency's health. An
`excuse(exc, started)` hook may clear a failure the caller itself caused (a timeout while our
own event loop was stalled): it is mapped like a failure but counted as neutral.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from enum import StrEnum
from typing import Any, TypeVar

from service.errors import DependencyUnavailable

T = TypeVar("T")


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Fails fast with `error_cls` while a dependency looks down; probes it after a pause."""

    def __init__(
        self,
        name: str,
        *,
        error_cls: type[DependencyUnavailable] = DependencyUnavailable,
        failure_types: tuple[type[BaseException], ...] = (OSError,),
        failure_threshold: int = 3,
        reset_timeout_s: float = 1.0,
        half_open_max_calls: int = 1,
        map_failures: bool = True,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[str], None] | None = None,
        excuse: Callable[[BaseException, float], bool] | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, got {failure_threshold}")
        if half_open_max_calls < 1:
            raise ValueError(f"half_open_max_calls must be >= 1, got {half_open_max_calls}")
        if reset_timeout_s < 0:
            raise ValueError(f"reset_timeout_s must be >= 0, got {reset_timeout_s}")
        self.name = name
        self.error_cls = error_cls
        self.failure_types = failure_types
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self.half_open_max_calls = half_open_max_calls
        self.map_failures = map_failures
        self._clock = clock
        #: Told every time the breaker opens (the cache marks its view of Redis suspect).
        self._on_open = on_open
        self._excuse = excuse
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._trials_in_flight = 0
        self._last_error: str | None = None
        self._last_reason = "initial"
        self.counts = {
            "successes": 0, "failures": 0, "excused": 0, "rejected": 0, "opened": 0, "closed": 0
        }  # fmt: skip

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose pause has elapsed reads as half-open."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.reset_timeout_s
        ):
            # Pause is over: let a limited number of trial calls find out whether it is back.
            self._transition(BreakerState.HALF_OPEN, "reset timeout elapsed; probing")
        return self._state

    @property
    def is_closed(self) -> bool:
        return self.state is BreakerState.CLOSED

    def before_call(self) -> None:
        """Admit one call or raise `error_cls` without touching the dependency."""
        state = self.state
        if state is BreakerState.CLOSED:
            return
        if state is BreakerState.HALF_OPEN and self._trials_in_flight < self.half_open_max_calls:
            self._trials_in_flight += 1
            return
        self.counts["rejected"] += 1
        raise self.error_cls(
            f"{self.name} unavailable (circuit {state.value})",
            {"dependency": self.name, "breaker": state.value},
        )

    def record_success(self) -> None:
        """A call admitted by `before_call` succeeded."""
        self.counts["successes"] += 1
        self._consecutive_failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            # The trial went through: the dependency answers again.
            self._transition(BreakerState.CLOSED, "trial call succeeded")

    def record_failure(self, exc: BaseException | None = None) -> None:
        """A call admitted by `before_call` failed because of the dependency."""
        self.counts["failures"] += 1
        self._consecutive_failures += 1
        self._last_error = repr(exc) if exc is not None else None
        if self._state is BreakerState.HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)
            # The probe failed: still down, wait a full pause before probing again.
            self._open("trial call failed")
        elif (
            self._state is BreakerState.CLOSED
            and self._consecutive_failures >= self.failure_threshold
        ):
            # Enough failures in a row that further calls would only pay for timeouts.
            self._open(f"{self._consecutive_failures} consecutive failures")

    def record_neutral(self) -> None:
        """A call ended without saying anything about health (cancelled, or a non-dependency error)."""
        if self._state is BreakerState.HALF_OPEN:
            self._trials_in_flight = max(0, self._trials_in_flight - 1)

    def trip(self, reason: str) -> None:
        """Open now: someone else (a listener losing its connection) saw the dependency die."""
        if self._state is not BreakerState.OPEN:
            self._open(reason)

    def reset(self, reason: str) -> None:
        """Close now: someone else (a reconnected listener) proved the dependency is back."""
        self._consecutive_failures = 0
        self._trials_in_flight = 0
        if self._state is not BreakerState.CLOSED:
            self._transition(BreakerState.CLOSED, reason)

    @asynccontextmanager
    async def guard(self) -> AsyncIterator[None]:
        """`async with breaker.guard(): ...` — admit, run the body, record the outcome."""
        self.before_call()
        started = self._clock()
        try:
            yield
        except self.failure_types as exc:
            if self._excuse is not None and self._excuse(exc, started):
                self.counts["excused"] += 1
                self.record_neutral()
            else:
                self.record_failure(exc)
            if self.map_failures:
                raise self.error_cls(
                    f"{self.name} unavailable: {exc}",
                    {"dependency": self.name, "breaker": self._state.value},
                ) from exc
            raise
        except BaseException:
            self.record_neutral()
            raise
        else:
            self.record_success()

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Run `await fn(*args, **kwargs)` under `guard()`."""
        async with self.guard():
            return await fn(*args, **kwargs)

    def stats(self) -> dict[str, Any]:
        """State and counters for /health and get_cache_stats."""
        return {
            "name": self.name,
            "state": self.state.value,
            "consecutive_failures": self._consecutive_failures,
            "last_error": self._last_error,
            "last_transition": self._last_reason,
            **self.counts,
        }

    def _open(self, reason: str) -> None:
        self._opened_at = self._clock()
        self._trials_in_flight = 0
        self.counts["opened"] += 1
        self._transition(BreakerState.OPEN, reason)
        if self._on_open is not None:
            self._on_open(reason)

    def _transition(self, state: BreakerState, reason: str) -> None:
        if state is BreakerState.CLOSED and self._state is not BreakerState.CLOSED:
            self.counts["closed"] += 1
        self._state = state
        self._last_reason = f"{state.value}: {reason}"
