"""execute_pattern against real PostgreSQL + pgvector and real Redis: memory and hybrid token
budgets, the learning record, the cache path, and a timeout that hands its connection back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from service.config import CacheSettings, DatabaseSettings
from service.embedding import Embedder
from service.errors import ExecutionTimeout
from service.patterns.registry import PLAN_TOKEN_BUDGETS
from service.patterns.tokens import token_report
from service.patterns.tokens_cli import rows_from_database
from service.tools.registry import ToolRegistry

store_db = pytest.importorskip("service.store.db")
migrate_mod = pytest.importorskip("service.store.migrate")
pytest.importorskip("service.store.executions")

NOTES = [
    "The staging database runs PostgreSQL 18 on port 5433 and is rebuilt every Sunday night.",
    "Redis failover: the sentinel promotes the replica within ten seconds; clients must reconnect.",
    "Deployment checklist: run migrations, warm the cache, then shift traffic in 10 percent steps.",
    "The billing service retries webhooks three times with exponential backoff before alerting.",
    "Decision about caching: we chose Redis over Memcached for pub/sub invalidation support.",
]
TASKS = [
    "Finish the cache coherency experiment",
    "Review the migration runbook",
    "Tune pgvector HNSW",
]


def _register_store_tools(registry: ToolRegistry) -> None:
    from service.tools.agent_tools import register_agent_tools
    from service.tools.memory_tools import register_memory_tools
    from service.tools.task_tools import register_task_tools

    register_memory_tools(registry)
    register_task_tools(registry)
    register_agent_tools(registry)


@pytest.fixture(scope="module")
async def database(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Any]:
    """A private migrated database on the session's PostgreSQL, dropped afterwards."""
    name = f"tmws_patterns_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(infra.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = infra.database_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        await migrate_mod.migrate(url, Path(tmp_path_factory.mktemp("backups")))
        db = await store_db.Database.connect(DatabaseSettings(url=url, pool_min=2, pool_max=5))
        try:
            yield db
        finally:
            await db.close()
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def database_url(db: Any) -> str:
    return str(db.settings.url)


async def _seed(services: Any, ctx: Any) -> None:
    for note in NOTES:
        stored = await services.tools.call(
            "execute_pattern", {"query": f"remember that {note}"}, ctx
        )
        assert (stored["pattern_name"], stored["route"]) == ("remember_note", "memory"), stored
    for title in TASKS:
        await services.tools.call("create_task", {"title": title, "description": title * 2}, ctx)


async def test_memory_and_hybrid_token_budgets_and_learning_record(
    embedder: Embedder, database: Any, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder, db=database, extra_tools=_register_store_tools)
    ctx = make_context(services)
    await _seed(services, ctx)
    cases = {
        "memory": [
            "what do I know about the staging database",
            "what did we decide about caching",
            "how did we fix redis failover",
            "search my memories for the deployment checklist",
        ],
        "hybrid": [
            "catch me up",
            "give me a status report",
            "prepare my standup",
            "troubleshoot the outage",
        ],
        "infrastructure": ["list my tasks", "who am I", "system status"],
    }
    measured: dict[str, list[int]] = {}
    for kind, queries in cases.items():
        budget = PLAN_TOKEN_BUDGETS[kind]
        for query in queries:
            result = await services.tools.call("execute_pattern", {"query": query}, ctx)
            assert result["route"] == kind and result["success"], (query, result)
            assert not result["partial"], result["result"]
            used, whole = result["tokens_used"], result["tokens_untrimmed"]
            assert used <= budget and used <= whole and result["truncated"] == (whole > budget)
            measured.setdefault(kind, []).append(whole)
    # Measured, not configured: the untrimmed prompts (printed for the record) are what the
    # templates make of these results; the plan's 80/150 targets are judged in experiment 5.3.
    print(f"\nuntrimmed prompt tokens per type: {measured}")

    async with database.acquire() as conn:
        rows = await conn.fetch(
            "SELECT * FROM pattern_executions WHERE agent_id = $1 ORDER BY id", ctx.agent_id
        )
    executed = len(NOTES) + sum(len(q) for q in cases.values())
    assert len(rows) == executed
    assert {r["instance_id"] for r in rows} == {services.instance_id}
    recall = next(r for r in rows if r["pattern_name"] == "recall_topic")
    assert (recall["route"], recall["pattern_type"], recall["success"]) == (
        "memory",
        "memory",
        True,
    )
    assert recall["tokens_baseline"] == 400 and recall["execution_mode"] == "balanced"
    assert recall["cache_hit"] is False and recall["cache_tier"] == "none"
    report = token_report([dict(r) for r in rows])
    print(f"token report over executed requests: {report}")
    assert report["requests"] == executed and report["reduction"] > 0.4
    from_db = token_report(await rows_from_database(database_url(database)))
    assert from_db["requests"] >= executed and from_db["reduction"] is not None


async def test_failure_is_in_the_learning_record(
    embedder: Embedder, database: Any, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder, db=database, extra_tools=_register_store_tools)
    ctx = make_context(services)
    result = await services.tools.call("execute_pattern", {"query": "failing pattern test"}, ctx)
    assert result["route"] == "llm_fallback"
    async with database.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM pattern_executions WHERE agent_id = $1", ctx.agent_id
        )
    assert (row["pattern_name"], row["route"], row["success"]) == (
        "failing_test_pattern",
        "llm_fallback",
        False,
    )
    assert "fail_tool" in row["error"] and row["tokens_used"] == 400


async def test_timeout_cancels_and_returns_the_connection(
    embedder: Embedder,
    database: Any,
    make_services: Any,
    make_context: Any,
    catalogue: dict[str, Any],
    write_catalogue: Callable[[dict[str, Any]], Path],
    pattern_spec: Any,
) -> None:
    pattern_spec(catalogue, "slow_test_pattern").update(timeout_s=0.3)
    services = await make_services(embedder, patterns_path=write_catalogue(catalogue), db=database)
    ctx = make_context(services)
    with pytest.raises(ExecutionTimeout) as timed_out:
        await services.tools.call("execute_pattern", {"query": "slow pattern test"}, ctx)
    # The database call gave up before the pattern's own timeout: the error names the database,
    # and the wait is not held against the pattern (a frozen database must not demote it).
    assert timed_out.value.data.get("dependency") == "database", timed_out.value.data
    assert services.patterns.stats.snapshot("slow_test_pattern") == {}
    stats = database.pool_stats()
    print(f"\npool after timeout: {stats}")
    assert stats["in_use"] == 0
    # The pool still works, and the cancelled pg_sleep soon no longer runs on the server (the
    # cancel is sent in the background: bounded wait, well before the sleep could end itself).
    deadline = time.monotonic() + 3.0
    while True:
        async with database.acquire() as conn:
            sleeping = await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                "AND query LIKE 'SELECT pg_sleep%'"
            )
        if sleeping == 0 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    assert sleeping == 0
    async with database.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT * FROM pattern_executions WHERE agent_id = $1", ctx.agent_id
        )
    assert (row["pattern_name"], row["success"]) == ("slow_test_pattern", False)
    assert row["error"].startswith("timeout")


async def test_cache_hit_costs_only_the_envelope(
    embedder: Embedder, database: Any, infra: Any, make_services: Any, make_context: Any
) -> None:
    coherent = pytest.importorskip("service.cache.coherent")
    cache = await coherent.CoherentCache.start(
        infra.redis_url, CacheSettings(), f"inst-{uuid.uuid4().hex[:6]}"
    )
    try:
        services = await make_services(
            embedder, db=database, cache=cache, extra_tools=_register_store_tools
        )
        ctx = make_context(services)
        query = {"query": "what do I know about the staging database"}
        first = await services.tools.call("execute_pattern", query, ctx)
        second = await services.tools.call("execute_pattern", query, ctx)
        assert (first["cache_hit"], first["cache_tier"]) == (False, "none")
        assert (second["cache_hit"], second["cache_tier"]) == (True, "l1")
        assert second["version"] == first["version"] is not None
        assert second["result"] == first["result"]
        # A hit repeats the answer, so it costs the prompt of the answer it repeats.
        for field in ("tokens_used", "tokens_untrimmed", "truncated"):
            assert second[field] == first[field], field
        # A write through the memory pattern bumps the namespace generation: the next read recomputes.
        await services.tools.call(
            "execute_pattern", {"query": "remember that staging moved to port 5434"}, ctx
        )
        third = await services.tools.call("execute_pattern", query, ctx)
        assert third["cache_hit"] is False and third["version"] > first["version"]
        print(f"\ncache: miss {first['tokens_used']} tokens, hit {second['tokens_used']} tokens")
    finally:
        await cache.close()


async def test_team_namespace_patterns_act_on_the_team(
    embedder: Embedder, database: Any, make_services: Any, make_context: Any
) -> None:
    """A memory pattern run with `namespace=team:…` stores into and recalls from the team."""
    services = await make_services(embedder, db=database, extra_tools=_register_store_tools)
    team = f"team:t{uuid.uuid4().hex[:6]}"
    writer = make_context(services, agent_id=f"writer-{uuid.uuid4().hex[:6]}")
    reader = make_context(services, agent_id=f"reader-{uuid.uuid4().hex[:6]}")
    note = "The team's release train leaves every second Tuesday at noon."
    stored = await services.tools.call(
        "execute_pattern", {"query": f"remember that {note}", "namespace": team}, writer
    )
    assert stored["pattern_name"] == "remember_note" and stored["namespace"] == team
    private = await services.tools.call(
        "execute_pattern", {"query": "what do I know about the release train"}, reader
    )
    assert note not in str(private["result"])
    shared = await services.tools.call(
        "execute_pattern",
        {"query": "what do I know about the release train", "namespace": team},
        reader,
    )
    assert shared["route"] == "memory" and note in str(shared["result"]), shared


async def test_recall_by_tag_filters_on_the_named_tag(
    embedder: Embedder, database: Any, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder, db=database, extra_tools=_register_store_tools)
    ctx = make_context(services)
    notes = {
        "invoice numbering restarts every January": ["billing"],
        "refunds above 500 euros need a second approval": ["billing", "policy"],
        "the staging cluster is rebuilt on Sundays": ["infra"],
    }
    for content, tags in notes.items():
        await services.tools.call("store_memory", {"content": content, "tags": tags}, ctx)
    args = {"query": "show my notes tagged billing", "use_cache": False}
    result = await services.tools.call("execute_pattern", args, ctx)
    assert (result["route"], result["pattern_name"]) == ("memory", "recall_tagged"), result
    found = result["result"]["output"]["results"]
    assert {r["content"] for r in found} == {c for c, t in notes.items() if "billing" in t}
