"""Session registry limits and the token bucket, with an injected clock."""

from __future__ import annotations

import pytest

from service.errors import ConnectionLimit, InvalidParams
from service.sessions import SessionRegistry, TokenBucket, check_agent_id


def test_limit_per_agent_and_close() -> None:
    registry = SessionRegistry(max_per_agent=3)
    seen: list[tuple[str, int]] = []
    registry.listeners.append(lambda agent, count: seen.append((agent, count)))
    sessions = [registry.open("a") for _ in range(3)]
    assert len({s.session_id for s in sessions}) == 3
    with pytest.raises(ConnectionLimit) as info:
        registry.open("a")
    assert info.value.message == "agent 'a' already has 3 open connections (limit 3)"
    assert info.value.to_error_object()["data"]["reason"] == "connection_limit"
    registry.open("b")  # other agents are not affected
    registry.close(sessions[0])
    registry.close(sessions[0])  # twice is harmless
    assert registry.count("a") == 2
    registry.open("a")
    assert registry.stats() == {"open": 4, "agents": 2, "max_per_agent": 3, "refused": 1}
    assert seen[:3] == [("a", 1), ("a", 2), ("a", 3)]
    assert ("a", 2) in seen[3:]


def test_registry_rejects_nonsense_limit() -> None:
    with pytest.raises(ValueError):
        SessionRegistry(0)


def test_agent_id_validation() -> None:
    assert check_agent_id("agent-1.x@host:2") == "agent-1.x@host:2"
    for bad in (None, "", "-starts-with-dash", "has space", "x" * 129, "a/b"):
        with pytest.raises(InvalidParams) as info:
            check_agent_id(bad)
        assert info.value.field == "agent_id"


class FakeClock:
    """A controllable monotonic clock (time is an input here, not a dependency)."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_refill() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=10, burst=5, clock=clock)
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]
    assert bucket.retry_after_s() == pytest.approx(0.1)
    clock.now += 0.25  # 2.5 tokens
    assert [bucket.try_take() for _ in range(3)] == [True, True, False]
    clock.now += 100  # refills only up to the burst
    assert sum(bucket.try_take() for _ in range(10)) == 5


def test_zero_rate_means_unlimited() -> None:
    bucket = TokenBucket(rate=0, burst=1)
    assert all(bucket.try_take() for _ in range(1000))


def test_bucket_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=-1, burst=1)
    with pytest.raises(ValueError):
        TokenBucket(rate=1, burst=0)
