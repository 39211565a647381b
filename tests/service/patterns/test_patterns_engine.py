"""`execute_pattern` through the ToolRegistry with a real Embedder (no database, no cache)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from service.embedding import Embedder
from service.errors import ExecutionTimeout, Forbidden, InvalidParams
from service.patterns.registry import PLAN_TOKEN_BUDGETS
from service.tools.memory_tools import register_memory_tools

REQUIRED = {
    "success",
    "pattern_name",
    "pattern_type",
    "route",
    "confidence",
    "execution_time_ms",
    "tokens_used",
    "tokens_baseline",
    "tokens_untrimmed",
    "truncated",
    "cache_hit",
    "cache_tier",
    "instance_id",
    "version",
    "degraded",
    "result",
}


async def test_execute_tool_test_query(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    args = {"query": "execute tool test", "execution_mode": "balanced", "use_cache": True}
    result = await services.tools.call("execute_pattern", args, ctx)
    assert REQUIRED <= result.keys()
    assert result["success"] is True
    assert (result["pattern_name"], result["pattern_type"], result["route"]) == (
        "execute_tool",
        "infrastructure",
        "infrastructure",
    )
    assert (result["cache_hit"], result["cache_tier"], result["version"]) == (False, "none", None)
    assert result["instance_id"] == services.instance_id
    assert result["tokens_baseline"] == 400
    _measured(result, PLAN_TOKEN_BUDGETS["infrastructure"])
    assert result["result"]["output"]["status"] == "ok"
    print(f"\nexecute tool test: {result['tokens_used']} tokens, {result['execution_time_ms']} ms")


def _measured(result: dict[str, Any], budget: int) -> None:
    """Tokens are counted, not configured: the sent prompt fits the budget, the untrimmed count
    is never below it, and `truncated` says exactly whether the budget cut something."""
    used, whole = result["tokens_used"], result["tokens_untrimmed"]
    assert 0 < used <= budget and used <= whole, result
    assert result["truncated"] == (whole > budget), result
    if not result["truncated"]:
        assert used == whole


async def test_infrastructure_tokens_are_measured(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    budget = PLAN_TOKEN_BUDGETS["infrastructure"]
    queries = [
        "system status",
        "list the available tools",
        "what time is it",
        "who am I",
        "pattern statistics",
    ]
    untrimmed = {}
    for query in queries:
        result = await services.tools.call("execute_pattern", {"query": query}, ctx)
        assert result["route"] == "infrastructure", (query, result)
        _measured(result, budget)
        untrimmed[query] = result["tokens_untrimmed"]
    print(f"\ninfrastructure prompts (untrimmed tokens; budget {budget}): {untrimmed}")
    # A result that differs makes a prompt of a different size: nothing is pinned to the budget.
    assert len(set(untrimmed.values())) > 1, untrimmed


async def test_llm_route_charges_baseline(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    result = await services.tools.call(
        "execute_pattern", {"query": "write a haiku about autumn leaves"}, make_context(services)
    )
    assert (result["route"], result["pattern_name"], result["tokens_used"]) == ("llm", None, 400)
    assert result["result"]["backend"] == "simulated"
    assert services.llm.calls == 1


async def test_fast_mode_sends_memory_queries_to_llm(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    fast = await services.tools.call(
        "execute_pattern",
        {"query": "remember that fast mode skips memory", "execution_mode": "fast"},
        ctx,
    )
    assert fast["route"] == "llm"
    infra = await services.tools.call(
        "execute_pattern", {"query": "health check", "execution_mode": "fast"}, ctx
    )
    assert infra["pattern_name"] == "system_status"


async def test_namespace_must_be_the_sessions(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services, "agent-a")
    ok = await services.tools.call(
        "execute_pattern", {"query": "system status", "namespace": "agent-a"}, ctx
    )
    assert ok["namespace"] == "agent-a"
    with pytest.raises(Forbidden):
        await services.tools.call(
            "execute_pattern", {"query": "system status", "namespace": "agent-b"}, ctx
        )


async def test_bad_params_name_the_field(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    with pytest.raises(InvalidParams) as caught:
        await services.tools.call("execute_pattern", {"query": "x", "execution_mode": "turbo"}, ctx)
    assert caught.value.field == "execution_mode"
    with pytest.raises(InvalidParams) as caught:
        await services.tools.call("execute_pattern", {"query": ""}, ctx)
    assert caught.value.field == "query"


async def test_slow_pattern_times_out(
    embedder: Embedder,
    make_services: Any,
    make_context: Any,
    catalogue: dict[str, Any],
    write_catalogue: Callable[[dict[str, Any]], Any],
    pattern_spec: Any,
) -> None:
    # The shipped pattern sleeps 8 s against a 5 s timeout; shortened here to keep the test quick.
    pattern_spec(catalogue, "slow_test_pattern").update(timeout_s=0.2)
    services = await make_services(embedder, patterns_path=write_catalogue(catalogue))
    ctx = make_context(services)
    with pytest.raises(ExecutionTimeout) as caught:
        await services.tools.call("execute_pattern", {"query": "slow pattern test"}, ctx)
    assert caught.value.code == -32001
    assert caught.value.data["pattern"] == "slow_test_pattern"
    stats = await services.tools.call(
        "get_pattern_stats", {"pattern_name": "slow_test_pattern"}, ctx
    )
    entry = stats["patterns"]["slow_test_pattern"]
    assert (entry["runs"], entry["failures"], entry["timeouts"]) == (1, 1, 1)
    assert services.llm.calls == 0  # a timeout is reported, not papered over by the LLM


async def test_failing_pattern_falls_back_to_llm_and_is_demoted(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    for i in range(5):
        result = await services.tools.call(
            "execute_pattern", {"query": "failing pattern test"}, ctx
        )
        assert result["success"] is True
        assert (result["route"], result["fallback"], result["pattern_name"]) == (
            "llm_fallback",
            True,
            "failing_test_pattern",
        ), i
        assert result["tokens_used"] == 400
        assert "failed" in result["error"]
    stats = (await services.tools.call("get_pattern_stats", {}, ctx))["patterns"][
        "failing_test_pattern"
    ]
    assert (stats["runs"], stats["failures"], stats["fallbacks"]) == (5, 5, 5)
    assert stats["demoted"] is True and stats["errors"] == {"tool_failed": 5}
    # Demoted: the router now sends it straight to the LLM without running the pattern.
    result = await services.tools.call("execute_pattern", {"query": "failing pattern test"}, ctx)
    assert (result["route"], result["fallback"]) == ("llm", False)
    assert services.llm.calls == 6


async def test_hybrid_reports_partial_failure(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    # No database here: the real recall tool fails as unavailable, the live tool part succeeds.
    services = await make_services(embedder, extra_tools=register_memory_tools)
    result = await services.tools.call(
        "execute_pattern", {"query": "give me a status report"}, make_context(services)
    )
    assert result["route"] == "hybrid" and result["partial"] is True
    parts = result["result"]["parts"]
    assert (
        parts["memory"]["ok"] is False
        and parts["memory"]["error"]["reason"] == "database_unavailable"
    )
    assert parts["system_status"]["ok"] is True
    assert result["result"]["failed_parts"] == ["memory"]


async def test_reload_patterns_bumps_version(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    before = await services.tools.call("execute_pattern", {"query": "system status"}, ctx)
    reloaded = await services.tools.call("reload_patterns", {}, ctx)
    after = await services.tools.call("execute_pattern", {"query": "system status"}, ctx)
    assert reloaded["version"] == before["registry_version"] + 1 == after["registry_version"]
    assert services.patterns.router.version == reloaded["version"]
