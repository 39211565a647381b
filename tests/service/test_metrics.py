"""`/metrics` and the `timings` map, on a real server (PostgreSQL, Redis, MiniLM) over WebSocket."""

from __future__ import annotations

import asyncio
import gc
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app, start_in_background, stop_background
from service.client import RpcError, WsClient
from service.config import DatabaseSettings, Settings

#: A query the learned router sends to memory recall (no trigger matches it whole).
MEMORY_QUERY = "what did we write down about the {topic} rollout"


@pytest.fixture
async def server(infra: Any, tmp_path: Path) -> AsyncIterator[tuple[int, Any]]:
    settings = replace(
        Settings(instance_id=f"metrics-{uuid.uuid4().hex[:6]}", state_dir=tmp_path),
        database=DatabaseSettings(pool_min=1, pool_max=4),
    ).with_urls(infra.database_url, infra.redis_url)
    app = create_app(settings)
    srv, task, port = await start_in_background(app, settings=settings)
    try:
        yield port, app.state.services
    finally:
        await stop_background(srv, task)


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample of the Prometheus text, None if absent."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        metric, _, value = line.rpartition(" ")
        found = dict(re.findall(r'(\w+)="([^"]*)"', metric))
        if metric.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


async def test_timings_map_and_one_encode_per_memory_request(server: tuple[int, Any]) -> None:
    port, services = server
    # Start-up objects (model, router, catalogue) are frozen: full collections skip them.
    assert gc.get_freeze_count() > 100_000
    topic = uuid.uuid4().hex[:8]
    query = MEMORY_QUERY.format(topic=topic)
    async with await WsClient.connect(f"ws://127.0.0.1:{port}", f"timer-{topic}") as client:
        before = services.embedder.encoded_texts
        first = await client.call("execute_pattern", {"query": query})
        assert first["route"] == "memory", first  # routed by the model: embedded, then recalled
        # Routing and recall shared one encode of the query (the LRU answered the second ask).
        assert services.embedder.encoded_texts - before == 1
        timings = first["timings"]
        for stage in ("queue", "route", "embed", "cache", "execute", "db", "record", "total"):
            assert timings[stage] >= 0, timings
        assert timings["route"] <= timings["total"]
        assert first["route_ms"] == pytest.approx(timings["route"], abs=0.01)
        again = await client.call("execute_pattern", {"query": query})
        assert again["cache_hit"] and again["cache_tier"] == "l1"
        assert "execute" not in again["timings"]  # a hit runs no executor
        assert services.embedder.encoded_texts - before == 1  # nor encodes again
        # The hit's learning-record row is written behind (not awaited), yet written.
        assert not services.settings.record_waits_on_hits
        async with asyncio.timeout(15):
            while True:
                async with services.db.acquire() as conn:
                    rows = await conn.fetch(
                        "SELECT cache_hit FROM pattern_executions WHERE agent_id = $1",
                        f"timer-{topic}",
                    )
                if sorted(r["cache_hit"] for r in rows) == [False, True]:
                    break
                await asyncio.sleep(0.05)  # a commit of another task: nothing here to await
        fast = await client.call(
            "execute_pattern", {"query": "system status", "execution_mode": "fast"}
        )
        assert "embed" not in fast["timings"]  # fast mode never embeds


async def test_metrics_endpoint_reports_requests_stages_and_live_state(
    server: tuple[int, Any],
) -> None:
    port, _ = server
    agent = f"scraped-{uuid.uuid4().hex[:6]}"
    async with await WsClient.connect(f"ws://127.0.0.1:{port}", agent) as client:
        for _ in range(3):
            await client.call("execute_pattern", {"query": "system status"})
        with pytest.raises(RpcError):
            await client.call(f"no_such_method_{agent}", {})
        await client.call("get_cache_stats", {})
        async with httpx.AsyncClient() as http:  # scraped while the socket is open
            reply = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    text = reply.text
    assert sample(text, "tmws_requests_total", method="execute_pattern", code="0") == 3
    assert sample(text, "tmws_request_duration_seconds_count", method="execute_pattern") == 3
    # An unknown method is counted under "other": client-chosen names never become labels.
    assert sample(text, "tmws_requests_total", method="other", code="-32601") == 1
    assert agent not in text
    assert sample(text, "tmws_stage_duration_seconds_count", stage="route") == 3
    assert sample(text, "tmws_stage_duration_seconds_count", stage="serialise") >= 5
    hits = sample(text, "tmws_pattern_cache_total", tier="l1") or 0
    assert hits + (sample(text, "tmws_pattern_cache_total", tier="l2") or 0) >= 2
    assert sample(text, "tmws_db_pool_size") >= 1
    assert sample(text, "tmws_breaker_state", breaker="postgresql", state="closed") == 1
    assert sample(text, "tmws_breaker_state", breaker="redis", state="closed") == 1
    assert sample(text, "tmws_cache_degraded") == 0
    assert sample(text, "tmws_embed_cache_max_entries") == 4096
    assert sample(text, "tmws_sessions_open") == 1
    # Negative control of the parser: a sample that is not there is not found.
    assert sample(text, "tmws_requests_total", method="execute_pattern", code="-32001") is None
