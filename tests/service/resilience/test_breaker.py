"""CircuitBreaker state machine with an injected clock: pure, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from service.errors import CacheUnavailable, DatabaseUnavailable
from service.resilience.breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, failure_threshold: int = 3) -> CircuitBreaker:
    return CircuitBreaker(
        "postgres",
        error_cls=DatabaseUnavailable,
        failure_types=(ConnectionError,),
        failure_threshold=failure_threshold,
        reset_timeout_s=5.0,
        clock=clock,
    )


async def down() -> None:
    raise ConnectionError("refused")


async def up() -> str:
    return "ok"


async def test_closed_open_half_open_closed() -> None:
    clock = Clock()
    breaker = make(clock)
    assert breaker.state is BreakerState.CLOSED
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable) as info:
            await breaker.call(down)
        assert isinstance(info.value.__cause__, ConnectionError)  # mapped at the boundary
    assert breaker.state is BreakerState.CLOSED  # below the threshold
    with pytest.raises(DatabaseUnavailable):
        await breaker.call(down)
    assert breaker.state is BreakerState.OPEN

    calls = 0

    async def counted() -> str:
        nonlocal calls
        calls += 1
        return "ok"

    with pytest.raises(DatabaseUnavailable, match="circuit open"):
        await breaker.call(counted)
    assert calls == 0 and breaker.stats()["rejected"] == 1  # open: the dependency is not touched

    clock.now += 4.9
    assert breaker.state is BreakerState.OPEN
    clock.now += 0.1
    assert breaker.state is BreakerState.HALF_OPEN
    assert await breaker.call(counted) == "ok"
    assert breaker.state is BreakerState.CLOSED and calls == 1
    stats = breaker.stats()
    assert stats["opened"] == 1 and stats["closed"] == 1 and stats["state"] == "closed"
    assert "trial call succeeded" in stats["last_transition"]


async def test_failed_trial_reopens_for_a_full_pause() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    with pytest.raises(DatabaseUnavailable):
        await breaker.call(down)
    clock.now += 5.0
    assert breaker.state is BreakerState.HALF_OPEN
    with pytest.raises(DatabaseUnavailable):
        await breaker.call(down)
    assert breaker.state is BreakerState.OPEN
    clock.now += 4.0
    assert breaker.state is BreakerState.OPEN
    clock.now += 1.0
    assert breaker.state is BreakerState.HALF_OPEN


async def test_half_open_admits_only_the_trial_calls() -> None:
    clock = Clock()
    breaker = make(clock, failure_threshold=1)
    breaker.trip("test")
    clock.now += 5.0
    gate, entered = asyncio.Event(), asyncio.Event()

    async def slow() -> str:
        entered.set()
        await gate.wait()
        return "ok"

    trial = asyncio.create_task(breaker.call(slow))
    async with asyncio.timeout(2):
        await entered.wait()
    with pytest.raises(DatabaseUnavailable, match="half_open"):
        await breaker.call(up)
    gate.set()
    assert await trial == "ok"
    assert breaker.state is BreakerState.CLOSED


async def test_successes_reset_the_failure_count_and_other_errors_do_not_count() -> None:
    clock = Clock()
    breaker = make(clock)

    async def bug() -> None:
        raise KeyError("not a dependency failure")

    for _ in range(5):
        with pytest.raises(DatabaseUnavailable):
            await breaker.call(down)
        breaker.reset("test")
        with pytest.raises(KeyError):
            await breaker.call(bug)
        assert await breaker.call(up) == "ok"
    assert breaker.state is BreakerState.CLOSED
    with pytest.raises(DatabaseUnavailable):
        await breaker.call(down)
    assert await breaker.call(up) == "ok"
    for _ in range(2):
        with pytest.raises(DatabaseUnavailable):
            await breaker.call(down)
    assert breaker.state is BreakerState.CLOSED  # 2 consecutive, not 3


async def test_guard_context_and_unmapped_failures() -> None:
    clock = Clock()
    breaker = CircuitBreaker(
        "redis",
        error_cls=CacheUnavailable,
        failure_types=(ConnectionError,),
        failure_threshold=1,
        map_failures=False,
        clock=clock,
    )
    with pytest.raises(ConnectionError):
        async with breaker.guard():
            raise ConnectionError("gone")
    with pytest.raises(CacheUnavailable) as info:
        async with breaker.guard():
            pytest.fail("body must not run while open")
    assert info.value.to_error_object()["data"]["reason"] == "cache_unavailable"


def test_constructor_checks_arguments() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("x", failure_threshold=0)
    with pytest.raises(ValueError, match="half_open_max_calls"):
        CircuitBreaker("x", half_open_max_calls=0)
