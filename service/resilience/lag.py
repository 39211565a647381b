"""Event-loop stall detection, so a timeout our own busy loop caused is not blamed on a server.

A socket read with a 1 s timeout fails if the loop does not run for 1 s, even when the reply
arrived at once: at the end of the stall the read's timer and its data become ready in the same
iteration and the timer wins. Counting that against Redis would open the breaker (and set off a
cache-wide recovery) on a healthy server whenever the process is busy. `LoopMonitor` ticks every
`interval_s`; `stalled_since(t)` is the longest time since `t` that the loop did not run.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time

#: A gap this long during a timed-out call means the loop, not the server, was too slow.
DEFAULT_STALL_S = 0.3


class LoopMonitor:
    """Ticks on the running loop and remembers recent gaps between ticks."""

    def __init__(self, interval_s: float = 0.05, keep: int = 256) -> None:
        self.interval_s = interval_s
        self._last = time.monotonic()
        self._gaps: collections.deque[tuple[float, float]] = collections.deque(maxlen=keep)
        self._task: asyncio.Task[None] | None = None
        self.longest_s = 0.0

    def start(self) -> None:
        if self._task is None:
            self._last = time.monotonic()
            self._task = asyncio.create_task(self._tick(), name="tmws-loop-monitor")

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            now = time.monotonic()
            gap = now - self._last - self.interval_s
            if gap > self.interval_s:
                self._gaps.append((now, gap))
                self.longest_s = max(self.longest_s, gap)
            self._last = now

    def stalled_since(self, since: float) -> float:
        """Longest stretch after `since` (time.monotonic) in which the loop did not run."""
        now = time.monotonic()
        current = max(0.0, now - self._last - self.interval_s)  # a stall still going on
        past = max((gap for at, gap in self._gaps if at > since), default=0.0)
        return max(current, past) if self._task is not None else 0.0

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
