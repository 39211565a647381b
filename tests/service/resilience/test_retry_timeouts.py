"""Backoff policy (what it retries, how long it waits) and time budgets."""

from __future__ import annotations

import asyncio
import random

import pytest

from service.errors import ExecutionTimeout
from service.resilience.retry import Backoff
from service.resilience.timeouts import Deadline, run_on_past_timeout, run_with_timeout


def test_delays_grow_cap_and_stay_within_jitter() -> None:
    policy = Backoff(initial_s=0.1, max_s=1.0, jitter=0.2, max_attempts=8, rng=random.Random(7))
    delays = list(policy.delays())
    assert len(delays) == 7
    for attempt, delay in enumerate(delays):
        base = min(1.0, 0.1 * 2**attempt)
        assert base * 0.8 <= delay <= base * 1.2
    assert Backoff(jitter=0.0, initial_s=0.1, max_s=0.3).delay(10) == 0.3


async def test_run_retries_only_listed_errors() -> None:
    pauses: list[float] = []

    async def record(pause: float) -> None:
        pauses.append(pause)

    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise ConnectionError("refused")
        return "ok"

    policy = Backoff(retry_on=(ConnectionError,), jitter=0.0, max_attempts=5)
    assert await policy.run(flaky, sleep=record) == "ok"
    assert attempts == 3 and pauses == [0.05, 0.1]
    assert policy.retries(ConnectionError()) and not policy.retries(ValueError())

    async def bug() -> None:
        raise ValueError("not retried")

    with pytest.raises(ValueError):
        await policy.run(bug, sleep=record)

    async def always_down() -> None:
        raise ConnectionError("still down")

    pauses.clear()
    with pytest.raises(ConnectionError):
        await policy.run(always_down, sleep=record)
    assert len(pauses) == 4


def test_backoff_checks_arguments() -> None:
    with pytest.raises(ValueError):
        Backoff(initial_s=0)
    with pytest.raises(ValueError):
        Backoff(jitter=1.0)
    with pytest.raises(ValueError):
        Backoff(max_attempts=0)


async def test_run_with_timeout_cancels_the_work() -> None:
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    with pytest.raises(ExecutionTimeout) as info:
        await run_with_timeout(stuck(), 0.05, what="pattern slow")
    assert cancelled.is_set()
    assert info.value.code == -32001 and info.value.data["timeout_s"] == 0.05
    assert await run_with_timeout(asyncio.sleep(0, "done"), 1.0, what="fast") == "done"


def test_deadline_clamps_to_remaining_budget() -> None:
    now = [0.0]
    deadline = Deadline(5.0, clock=lambda: now[0])
    assert deadline.clamp(10.0) == 5.0 and deadline.clamp(1.0) == 1.0
    now[0] = 4.5
    assert deadline.remaining() == pytest.approx(0.5) and not deadline.expired
    now[0] = 6.0
    assert deadline.remaining() == 0.0 and deadline.expired


@pytest.mark.parametrize("bugged", [True, False])
async def test_injected_no_cancel_on_timeout_leaves_the_work_running(bugged: bool) -> None:
    finished, cancelled = asyncio.Event(), asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(0.3)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        finished.set()
        return "done"

    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await (run_on_past_timeout(work()) if bugged else work())
    async with asyncio.timeout(5):
        await (finished if bugged else cancelled).wait()
    assert finished.is_set() is bugged and cancelled.is_set() is not bugged
