"""The generic actions behind the broadened catalogue: run a named tool (or say honestly that
none does it), live metrics, and tags taken from the query. Real embedder, no database."""

from __future__ import annotations

from typing import Any

import pytest

from service.embedding import Embedder
from service.patterns.executors import _fill_tags, extract_tag, resolve_tool

REGISTERED = ["execute_tool", "list_tasks", "list_tools", "server_time", "system_status"]


@pytest.mark.parametrize(
    ("requested", "query", "tool"),
    [
        ("", "run list_tasks please", "list_tasks"),
        ("test", "run the test tool", "execute_tool"),
        ("status", "run the status tool", "system_status"),
        ("build", "invoke the build tool", None),
        ("", "restart the redis service", None),
        ("", "could you call server_time for me", "server_time"),
    ],
)
def test_resolve_tool(requested: str, query: str, tool: str | None) -> None:
    assert resolve_tool(requested, query, REGISTERED) == tool


@pytest.mark.parametrize(
    ("query", "tag"),
    [
        ("show stored memories tagged security", "security"),
        ("memories with the tag #infra", "infra"),
        ("find the notes tagged 'billing' for me", "billing"),
        ("my notes labelled as decisions", "decisions"),
        ("what is tagged release-2.4 in my memory", "release-2.4"),
        ("find notes about tags", None),
        ("what did we decide about logging", None),
    ],
)
def test_extract_tag(query: str, tag: str | None) -> None:
    assert extract_tag(query) == tag


def test_tag_templates_fall_back_to_the_query_or_drop_the_filter() -> None:
    assert _fill_tags(("{tag}",), {"query": "x", "tag": "ops"}) == ["ops"]
    assert _fill_tags(("{tag}", "note"), {"query": "notes labelled billing"}) == [
        "billing",
        "note",
    ]
    assert _fill_tags(("{tag}",), {"query": "what do I know about redis"}) == []


async def _run(services: Any, ctx: Any, query: str) -> dict[str, Any]:
    return await services.tools.call("execute_pattern", {"query": query}, ctx)


async def test_unknown_action_answers_honestly_and_runs_nothing(
    embedder: Embedder, make_services: Any, make_context: Any
) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    result = await _run(services, ctx, "restart the redis service")
    assert (result["route"], result["pattern_name"]) == ("infrastructure", "run_tool"), result
    output = result["result"]["output"]
    assert output["available"] is False and output["ran"] is False
    assert "nothing was run" in output["reason"]
    assert set(services.tools.names()) == set(output["tools"])
    assert result["tokens_used"] <= 33  # an infrastructure answer, not the 400-token LLM


async def test_named_tool_runs(embedder: Embedder, make_services: Any, make_context: Any) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    result = await _run(services, ctx, "invoke the list_tools tool")
    output = result["result"]["output"]
    assert (result["pattern_name"], output["available"], output["tool"]) == (
        "run_tool",
        True,
        "list_tools",
    )
    assert output["output"]["count"] == len(services.tools.names())
    # A registered tool that needs arguments is named, not run.
    refused = await _run(services, ctx, "run the execute_pattern tool")
    assert refused["result"]["output"]["available"] is False
    assert refused["result"]["output"]["tool"] == "execute_pattern"


async def test_live_metrics(embedder: Embedder, make_services: Any, make_context: Any) -> None:
    services = await make_services(embedder)
    ctx = make_context(services)
    result = await _run(services, ctx, "show queue depth")
    assert (result["route"], result["pattern_name"]) == ("infrastructure", "live_metrics")
    output = result["result"]["output"]
    assert output["instance"] == services.instance_id
    assert output["uptime_s"] >= 0 and output["embed_queue"] >= 0
    assert result["route_ms"] >= 0
