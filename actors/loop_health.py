"""Is the load generator itself the bottleneck? Event-loop lag and CPU of one swarm's process.

Hundreds of agents share one event loop: when it cannot keep up, every latency it records grows
by its own backlog and the service is blamed for it. A ticker asks to wake every `interval_s`
and records how late it woke (the loop's lag); the process's CPU time over the phase gives its CPU
share. Like Locust's "CPU usage above 90 %" warning and k6's dropped iterations, `saturated`
says the figures of that phase measure the generator, not only the service.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import numpy as np
import psutil

DEFAULT_INTERVAL_S = 0.05
#: A generator above this share of one core is saturated (Locust warns at 90 %).
SATURATED_CPU_PERCENT = 90.0
#: ... or whose loop wakes this late at the 99th percentile.
SATURATED_LAG_MS = 50.0


@dataclass(frozen=True)
class LoopHealth:
    lag_ms_p99: float | None
    lag_ms_max: float | None
    #: CPU of the whole process over the window, percent of one core
    cpu_percent: float | None
    samples: int

    @property
    def saturated(self) -> bool:
        lagging = self.lag_ms_p99 is not None and self.lag_ms_p99 >= SATURATED_LAG_MS
        busy = self.cpu_percent is not None and self.cpu_percent >= SATURATED_CPU_PERCENT
        return lagging or busy


class LoopMonitor:
    """`start()` at the beginning of a phase, `stop()` at its end returns its `LoopHealth`."""

    def __init__(self, interval_s: float = DEFAULT_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._lags: list[float] = []
        self._task: asyncio.Task[None] | None = None
        self._process = psutil.Process()
        self._cpu_started = 0.0
        self._wall_started = 0.0

    def start(self) -> None:
        self._lags = []
        times = self._process.cpu_times()
        self._cpu_started = times.user + times.system
        self._wall_started = time.monotonic()
        self._task = asyncio.ensure_future(self._tick())

    async def stop(self) -> LoopHealth:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        wall = time.monotonic() - self._wall_started
        times = self._process.cpu_times()
        cpu = 100.0 * (times.user + times.system - self._cpu_started) / wall if wall > 0 else None
        lags = self._lags
        return LoopHealth(
            lag_ms_p99=float(np.percentile(lags, 99)) if lags else None,
            lag_ms_max=max(lags) if lags else None,
            cpu_percent=None if cpu is None else round(cpu, 1),
            samples=len(lags),
        )

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            wanted = loop.time() + self.interval_s
            await asyncio.sleep(self.interval_s)
            self._lags.append(max(0.0, (loop.time() - wanted) * 1000.0))
