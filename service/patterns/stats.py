"""Per-pattern success and latency statistics, fed by executions and read by the router.

In memory and per instance (the durable learning record is the `pattern_executions` table).
A pattern whose recent success rate falls below `demote_below` over at least `min_runs` runs is
demoted: the router scales its confidence down so its queries go to the LLM. A demoted pattern
gets one probe request every `probe_after_s`, so it can earn its way back once fixed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_WINDOW = 20
DEFAULT_MIN_RUNS = 5
DEFAULT_DEMOTE_BELOW = 0.5
DEFAULT_PROBE_AFTER_S = 30.0
#: A demoted pattern's confidence is multiplied by success_rate * this: at most 0.25, below any
#: threshold the router uses, so demotion always means the LLM route.
DEMOTION_SCALE = 0.5


@dataclass
class _PatternRecord:
    outcomes: deque[bool]
    latencies_ms: deque[float]
    runs: int = 0
    successes: int = 0
    failures: int = 0
    timeouts: int = 0
    fallbacks: int = 0
    cache_hits: int = 0
    last_error: str | None = None
    last_run_at: float = 0.0
    last_probe_at: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)


class PatternStats:
    """Bounded recent-outcome windows per pattern, plus lifetime counters."""

    def __init__(
        self,
        *,
        window: int = DEFAULT_WINDOW,
        min_runs: int = DEFAULT_MIN_RUNS,
        demote_below: float = DEFAULT_DEMOTE_BELOW,
        probe_after_s: float = DEFAULT_PROBE_AFTER_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if min_runs > window:
            raise ValueError(f"min_runs={min_runs} must be <= window={window}")
        self._window = window
        self._min_runs = min_runs
        self._demote_below = demote_below
        self._probe_after_s = probe_after_s
        self._clock = clock
        self._records: dict[str, _PatternRecord] = {}

    def _record(self, name: str) -> _PatternRecord:
        rec = self._records.get(name)
        if rec is None:
            rec = _PatternRecord(deque(maxlen=self._window), deque(maxlen=self._window))
            self._records[name] = rec
        return rec

    def record(
        self,
        name: str,
        *,
        success: bool,
        latency_ms: float,
        error: str | None = None,
        timeout: bool = False,
        fallback: bool = False,
    ) -> None:
        """One computed execution of `name` (cache hits go to `record_hit`)."""
        rec = self._record(name)
        rec.outcomes.append(success)
        rec.latencies_ms.append(latency_ms)
        rec.runs += 1
        rec.last_run_at = self._clock()
        if success:
            rec.successes += 1
            return
        rec.failures += 1
        rec.timeouts += int(timeout)
        rec.fallbacks += int(fallback)
        rec.last_error = error
        kind = (error or "error").split(":", 1)[0]
        rec.errors[kind] = rec.errors.get(kind, 0) + 1

    def record_hit(self, name: str) -> None:
        """A cache hit: counted, but not an execution (it cannot fail)."""
        self._record(name).cache_hits += 1

    def success_rate(self, name: str) -> float | None:
        """Success rate over the recent window, or None with fewer than `min_runs` runs."""
        rec = self._records.get(name)
        if rec is None or len(rec.outcomes) < self._min_runs:
            return None
        return sum(rec.outcomes) / len(rec.outcomes)

    def is_demoted(self, name: str) -> bool:
        rate = self.success_rate(name)
        return rate is not None and rate < self._demote_below

    def confidence_factor(self, name: str) -> float:
        """Multiplier the router applies to `name`'s confidence (1.0 unless demoted)."""
        rate = self.success_rate(name)
        if rate is None or rate >= self._demote_below:
            return 1.0
        rec = self._records[name]
        now = self._clock()
        # Half-open, like a breaker: after a quiet spell let exactly one request through.
        if now - max(rec.last_run_at, rec.last_probe_at) >= self._probe_after_s:
            rec.last_probe_at = now
            return 1.0
        return rate * DEMOTION_SCALE

    def snapshot(self, name: str | None = None) -> dict[str, Any]:
        """JSON-ready statistics, for one pattern or all of them."""
        names = [name] if name is not None else sorted(self._records)
        return {n: self._describe(n) for n in names if n in self._records}

    def _describe(self, name: str) -> dict[str, Any]:
        rec = self._records[name]
        latencies = sorted(rec.latencies_ms)
        rate = self.success_rate(name)
        return {
            "runs": rec.runs,
            "successes": rec.successes,
            "failures": rec.failures,
            "timeouts": rec.timeouts,
            "fallbacks": rec.fallbacks,
            "cache_hits": rec.cache_hits,
            "recent_runs": len(rec.outcomes),
            "recent_success_rate": None if rate is None else round(rate, 4),
            "demoted": self.is_demoted(name),
            "latency_ms_p50": _percentile(latencies, 0.50),
            "latency_ms_p95": _percentile(latencies, 0.95),
            "latency_ms_max": round(latencies[-1], 3) if latencies else None,
            "last_error": rec.last_error,
            "errors": dict(rec.errors),
        }


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return round(ordered[index], 3)
