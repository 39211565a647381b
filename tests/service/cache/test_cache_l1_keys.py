"""Pure parts of the cache: L1 (LRU + TTL + generations) and deterministic keys."""

from __future__ import annotations

import pytest

from service.cache.keys import key_parts, lock_key, normalise_query, result_key
from service.cache.l1 import L1Cache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lru_evicts_least_recently_used() -> None:
    l1 = L1Cache(2, clock=Clock())
    l1.put("a", "1", "ns", 1, 1, 10)
    l1.put("b", "2", "ns", 1, 1, 10)
    assert l1.get("a") is not None  # a is now most recent
    l1.put("c", "3", "ns", 1, 1, 10)
    assert l1.get("b") is None and l1.get("a") is not None and l1.get("c") is not None
    assert len(l1) == 2 and l1.evictions == 1


def test_ttl_expires_entries() -> None:
    clock = Clock()
    l1 = L1Cache(10, clock=clock)
    l1.put("a", "1", "ns", 1, 1, 5)
    clock.now = 4.9
    assert l1.get("a") is not None
    clock.now = 5.0
    assert l1.get("a") is None and l1.expirations == 1 and len(l1) == 0


def test_generations_drop_older_entries_and_refuse_stale_puts() -> None:
    l1 = L1Cache(10, clock=Clock())
    l1.put("a", "1", "ns", 5, 1, 10)
    l1.put("b", "1", "other", 5, 1, 10)
    assert l1.observe_generation("ns", 6) == 1
    assert l1.get("a") is None and l1.get("b") is not None
    assert not l1.put("a", "1", "ns", 5, 1, 10)  # computed before a bump we already heard of
    assert l1.put("a", "2", "ns", 6, 1, 10)
    assert l1.observe_generation("ns", 6) == 0  # replayed message: nothing to do
    assert l1.observe_generation("*", 2) == 2  # global bump drops every namespace
    assert len(l1) == 0
    assert l1.known_generation("ns") == 6 and l1.known_generation("*") == 2
    l1.put("c", "1", "ns", 6, 2, 10)
    assert l1.drop_namespace("ns") == 1
    assert l1.clear() == 0 and l1.known_generation("ns") is None


def test_l1_rejects_bad_size() -> None:
    with pytest.raises(ValueError):
        L1Cache(0)


def test_keys_are_deterministic_and_scoped() -> None:
    parts = key_parts("Show   the Deploy status?", registry_version=3, mode="balanced")
    same = key_parts("show the deploy status", registry_version=3, mode="balanced")
    key = result_key("agent-1", parts)
    assert (
        key == result_key("agent-1", same) == result_key("agent-1", dict(reversed(parts.items())))
    )
    assert key.startswith("tmws:c:") and len(key) == len("tmws:c:") + 64
    assert key != result_key("agent-2", parts)
    assert key != result_key("agent-1", {**parts, "registry_version": 4})
    assert key != result_key("agent-1", {**parts, "mode": "fast"})
    assert lock_key(key) == "tmws:lock:" + key.removeprefix("tmws:c:")
    assert normalise_query("  Ｈｅｌｌｏ\tWORLD!! ") == "hello world"
