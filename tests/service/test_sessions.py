"""Session registry limits and the token bucket, with an injected clock."""

from __future__ import annotations

import pytest

from service.errors import ConnectionLimit, InvalidParams
from service.sessions import AgentRateLimiter, SessionRegistry, TokenBucket, check_agent_id


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
    assert registry.stats() == {
        "open": 4,
        "agents": 2,
        "max_per_agent": 3,
        "max_total": None,
        "refused": 1,
        "rate_limited_agent": 0,
    }
    assert seen[:3] == [("a", 1), ("a", 2), ("a", 3)]
    assert ("a", 2) in seen[3:]


def test_registry_rejects_nonsense_limit() -> None:
    with pytest.raises(ValueError):
        SessionRegistry(0)


def test_server_wide_connection_cap() -> None:
    registry = SessionRegistry(max_per_agent=5, max_total=3)
    for agent in ("a", "b", "c"):
        registry.open(agent)
    with pytest.raises(ConnectionLimit) as info:
        registry.open("d")
    assert info.value.data == {"scope": "server", "limit": 3}
    assert "server already has 3 open connections" in info.value.message
    registry.close(registry.sessions()[0])
    registry.open("d")  # a freed slot is usable again


def test_agent_rate_limit_is_shared_and_bounded_in_memory() -> None:
    clock = FakeClock()
    limiter = AgentRateLimiter(10, 2, clock=clock)
    assert limiter.take("a") is None and limiter.take("a") is None
    refused = limiter.take("a")
    assert refused is not None and refused.data["scope"] == "agent"
    assert refused.data["retry_after_s"] == pytest.approx(0.1)
    assert limiter.take("b") is None  # another agent has its own bucket
    clock.now += 0.2
    assert limiter.take("a") is None
    # Idle agents' buckets are swept once the map has grown: memory follows active agents only.
    for i in range(AgentRateLimiter._SWEEP_EVERY + 10):
        clock.now += 1.0
        limiter.take(f"agent-{i}")
    assert len(limiter._buckets) < 20
    assert SessionRegistry(1).rates.take("x") is None  # rate 0: off


def test_agent_id_validation() -> None:
    assert check_agent_id("agent-1.x@host") == "agent-1.x@host"
    # No ':' at all: "team:alpha" would own the team namespace as its private one.
    for bad in (None, "", "-starts-with-dash", "has space", "x" * 129, "a/b", "team:alpha", "a:b"):
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
