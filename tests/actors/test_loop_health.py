"""The swarm's own health: event-loop lag and CPU, and when they say the generator saturated."""

from __future__ import annotations

import asyncio
import time

from actors.loop_health import SATURATED_LAG_MS, LoopHealth, LoopMonitor


async def test_an_idle_loop_is_not_saturated() -> None:
    monitor = LoopMonitor(interval_s=0.01)
    monitor.start()
    await asyncio.sleep(0.3)
    health = await monitor.stop()
    assert health.samples >= 5
    assert health.cpu_percent is not None and health.cpu_percent < 90.0
    assert not health.saturated or health.lag_ms_p99 >= SATURATED_LAG_MS  # a very busy machine


async def test_a_blocked_loop_is_seen_as_lag_and_cpu() -> None:
    monitor = LoopMonitor(interval_s=0.01)
    monitor.start()
    await asyncio.sleep(0.05)
    deadline = time.perf_counter() + 0.4
    while time.perf_counter() < deadline:  # the generator burning its loop: busy, not sleeping
        pass
    await asyncio.sleep(0.05)
    health = await monitor.stop()
    assert health.lag_ms_max is not None and health.lag_ms_max >= 300.0
    assert health.saturated


def test_saturation_needs_evidence() -> None:
    assert not LoopHealth(None, None, None, 0).saturated
    assert LoopHealth(None, None, 95.0, 0).saturated
    assert LoopHealth(60.0, 80.0, 10.0, 10).saturated
    assert not LoopHealth(2.0, 5.0, 40.0, 10).saturated
