"""Run a routed pattern: infrastructure (one tool), memory (recall/store), hybrid (both).

A catalogue names the tools its patterns run, so executors call tools by name, through the
`ToolRunner` the engine was built with (the server's tool registry) and with the caller's
context: namespace rules, validation and cache invalidation of those tools apply unchanged. Two more
actions exist only as pattern executors (`BUILTINS`): `invoke_tool`, which runs the tool a query
names or answers honestly that no tool does what was asked, and `service_metrics`, the live
figures of this instance. Errors are our own (`TMWSError`); the engine decides between the LLM
fallback and the client.
"""

from __future__ import annotations

import asyncio
import re
import string
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

from service.bugs import NO_BUGS, InjectedBugs
from service.context import CallContext
from service.errors import ExecutionTimeout, TMWSError, ToolFailed, lost_dependency
from service.patterns.registry import MemoryOp, Pattern, ToolCall
from service.resilience.timeouts import enclosing_deadline, run_on_past_timeout

RECALL_TOOL = "recall_memory"
STORE_TOOL = "store_memory"
#: Tools `invoke_tool` runs on a query's say-so: read-only, and callable without arguments.
INVOCABLE_TOOLS = frozenset(
    {
        "system_status",
        "list_tools",
        "server_time",
        "get_agent_info",
        "get_cache_stats",
        "get_pattern_stats",
        "list_tasks",
        "execute_tool",
    }
)
#: Words people use for a tool instead of its registered name.
TOOL_ALIASES: dict[str, str] = {
    "test": "execute_tool",
    "diagnostic": "execute_tool",
    "probe": "execute_tool",
    "status": "system_status",
    "health": "system_status",
    "healthcheck": "system_status",
    "time": "server_time",
    "clock": "server_time",
    "tools": "list_tools",
    "tasks": "list_tasks",
    "task": "list_tasks",
    "cache": "get_cache_stats",
    "cache_stats": "get_cache_stats",
    "pattern_stats": "get_pattern_stats",
    "agent_info": "get_agent_info",
    "whoami": "get_agent_info",
}
_IDENTIFIER = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b")
_NAMED_TOOL = re.compile(r"\b([a-z][a-z0-9_-]*) tool\b")
#: "tagged security", "with the tag #infra", "label: billing", "tag urgent"
_TAG = re.compile(
    r"(?:\btagged(?: with| as)?|\blabell?ed(?: as| with)?|\b(?:tag|label)s?)\b\s*[:=]?\s*['\"#]?"
    r"(?P<tag>[a-z0-9][\w.-]{0,63})",
    re.IGNORECASE,
)
_TAG_STOPWORDS = frozenset({"the", "a", "an", "with", "as", "of", "my", "our", "and", "or", "both"})


class ToolRunner(Protocol):
    """What executors need of the tool layer (`service.tools.registry.ToolRegistry` is one)."""

    def names(self) -> list[str]: ...

    async def call(self, name: str, arguments: Any, ctx: CallContext) -> dict[str, Any]: ...


async def run_pattern(
    pattern: Pattern,
    query: str,
    groups: Mapping[str, str],
    ctx: CallContext,
    tools: ToolRunner,
    *,
    timeout_s: float | None = None,
    bugs: InjectedBugs = NO_BUGS,
) -> dict[str, Any]:
    """Execute `pattern` within its timeout; a late one is cancelled and `ExecutionTimeout` raised."""
    budget = pattern.timeout_s if timeout_s is None else timeout_s
    with enclosing_deadline(budget):  # database calls inside end before the pattern's timeout
        work = _dispatch(pattern, query, groups, ctx, tools)
        if bugs.no_cancel_on_timeout:
            work = run_on_past_timeout(work)  # injected bug: the timeout answers, the work runs on
        try:
            async with asyncio.timeout(budget) as deadline:
                return await work
        except TimeoutError as exc:
            # Only our own deadline is a pattern timeout; a tool's internal TimeoutError is its bug.
            if deadline.expired():
                raise ExecutionTimeout(
                    f"pattern {pattern.name!r} exceeded its {budget:g}s timeout and was cancelled",
                    {"pattern": pattern.name, "timeout_s": budget},
                ) from exc
            raise


async def _dispatch(
    pattern: Pattern, query: str, groups: Mapping[str, str], ctx: CallContext, tools: ToolRunner
) -> dict[str, Any]:
    values = {"query": query, "text": groups.get("text", query), **groups}
    if pattern.type == "infrastructure":
        return await _call(pattern.calls[0], values, ctx, tools)
    assert pattern.memory is not None  # guaranteed by registry validation
    if pattern.type == "memory":
        return await _memory(pattern.memory, values, ctx, tools)
    return await _hybrid(pattern, values, ctx, tools)


async def _call(
    call: ToolCall, values: Mapping[str, str], ctx: CallContext, tools: ToolRunner
) -> dict[str, Any]:
    arguments = {}
    for key, value in call.arguments.items():
        filled = _fill(value, values)
        if filled is not _MISSING:
            arguments[key] = filled
    builtin = BUILTINS.get(call.tool)
    if builtin is not None:
        return {"tool": call.tool, "output": await builtin(ctx, tools, arguments, values)}
    output = await tools.call(call.tool, arguments, ctx)
    return {"tool": call.tool, "output": output}


async def invoke_tool(
    ctx: CallContext, tools: ToolRunner, arguments: Mapping[str, Any], values: Mapping[str, str]
) -> dict[str, Any]:
    """Run the tool the query names; otherwise say plainly that nothing was run, and why.

    `arguments.name` is the name a trigger captured (absent on a model match, in which case the
    query itself is searched for a tool name). Only `INVOCABLE_TOOLS` run: the rest need
    arguments or change state, which a sentence is not precise enough to supply.
    """
    registered = tools.names()
    query = str(values.get("query", ""))
    requested = str(arguments.get("name") or "").strip()
    name = resolve_tool(requested, query, registered)
    if name is not None and name in INVOCABLE_TOOLS:
        output = await tools.call(name, {}, ctx)
        return {"available": True, "tool": name, "output": output}
    if name is not None:
        return {
            "available": False,
            "tool": name,
            "ran": False,
            "reason": f"{name} needs arguments or changes state: call it directly (tools/call)",
            "tools": registered,
        }
    return {
        "available": False,
        "requested": requested or query,
        "ran": False,
        "reason": "no tool on this server does that; nothing was run",
        "tools": registered,
    }


def resolve_tool(requested: str, query: str, registered: list[str]) -> str | None:
    """The registered tool `requested` (or, failing that, the query) refers to, if any."""
    known = set(registered)
    candidates = []
    if requested:
        key = re.sub(r"[\s-]+", "_", requested.lower()).removesuffix("_tool")
        candidates += [key, TOOL_ALIASES.get(key, "")]
    text = query.lower()
    candidates += _IDENTIFIER.findall(text)
    candidates += [TOOL_ALIASES.get(m, "") for m in _NAMED_TOOL.findall(text)]
    for candidate in candidates:
        if candidate in known:
            return candidate
    return None


async def service_metrics(
    ctx: CallContext, tools: ToolRunner, arguments: Mapping[str, Any], values: Mapping[str, str]
) -> dict[str, Any]:
    """Live figures of this instance: sessions, pool, queues, cache; absent parts are omitted."""
    services = ctx.services
    out: dict[str, Any] = {"instance": ctx.instance_id}
    out["uptime_s"] = round(time.time() - services.started_at, 1)
    if services.sessions is not None:
        out["sessions"] = services.sessions.stats()
    if services.db is not None:
        pool = services.db.pool_stats()
        keys = ("size", "idle", "in_use", "max", "waiting", "waiting_peak", "exhausted_total")
        out["db_pool"] = {k: pool[k] for k in keys if k in pool}
    if services.cache is not None:
        stats = services.cache.stats()
        lookups = sum(int(stats.get(k, 0)) for k in ("hits_l1", "hits_l2", "misses"))
        hits = int(stats.get("hits_l1", 0)) + int(stats.get("hits_l2", 0))
        out["cache"] = {
            "hit_rate": round(hits / lookups, 4) if lookups else None,
            "lookups": lookups,
            "l1_size": stats.get("l1_size"),
            "redis_state": stats.get("redis_state"),
            "degraded": stats.get("degraded"),
        }
    embed = services.embedder.stats()
    out["embed_queue"] = embed["queued"]
    out["embed_cache_hit_rate"] = embed["cache"]["hit_rate"]
    return out


Builtin = Callable[
    [CallContext, ToolRunner, Mapping[str, Any], Mapping[str, str]], Awaitable[dict[str, Any]]
]
#: Pattern actions that are not registered tools (a catalogue names them like tools).
BUILTINS: dict[str, Builtin] = {"invoke_tool": invoke_tool, "service_metrics": service_metrics}


async def _memory(
    op: MemoryOp, values: Mapping[str, str], ctx: CallContext, tools: ToolRunner
) -> dict[str, Any]:
    if op.action == "store":
        arguments: dict[str, Any] = {"content": _fill_text(op.content, values)}
        if op.tags:
            arguments["tags"] = list(op.tags)
        output = await tools.call(STORE_TOOL, arguments, ctx)
        return {"action": "store", "output": output}
    arguments = {"query": _fill_text(op.query, values), "limit": op.limit}
    if op.min_similarity:
        arguments["min_similarity"] = op.min_similarity
    tags = _fill_tags(op.tags, values)
    if tags:
        arguments["tags"] = tags
    output = await tools.call(RECALL_TOOL, arguments, ctx)
    return {"action": "recall", "output": output}


def _fill_tags(tags: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """Static tags as they are; `{tag}` from the trigger, else from the query's wording.

    A model match captures no group, so "show my notes labelled billing" finds its tag here;
    with no tag in the query at all the filter is dropped and recall ranks by meaning alone.
    """
    out = []
    for tag in tags:
        if "{" not in tag:
            out.append(tag)
            continue
        names = {name for _, name, _, _ in string.Formatter().parse(tag) if name}
        found = dict(values)
        if "tag" in names and not found.get("tag"):
            guess = extract_tag(str(values.get("query", "")))
            if guess is None:
                continue
            found["tag"] = guess
        if names - found.keys():
            continue
        out.append(tag.format_map(found))
    return out


def extract_tag(query: str) -> str | None:
    """The tag a query names ("tagged security" -> "security"), if it names one."""
    for match in _TAG.finditer(query):
        tag = match.group("tag").strip(".-").lower()
        if tag and tag not in _TAG_STOPWORDS:
            return tag
    return None


def _fill_text(template: str, values: Mapping[str, str]) -> str:
    """Memory text; an uncaptured group (a semantic match captures none) becomes the query."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return template.format_map({**dict.fromkeys(names, values["query"]), **values})


async def _hybrid(
    pattern: Pattern, values: Mapping[str, str], ctx: CallContext, tools: ToolRunner
) -> dict[str, Any]:
    assert pattern.memory is not None
    names = ["memory", *(c.tool for c in pattern.calls)]
    jobs = [
        _memory(pattern.memory, values, ctx, tools),
        *(_call(c, values, ctx, tools) for c in pattern.calls),
    ]
    outcomes = await asyncio.gather(*(_part(job) for job in jobs))
    parts: dict[str, Any] = {}
    failures: list[TMWSError] = []
    for name, (output, error) in zip(names, outcomes, strict=True):
        if error is None:
            parts[name] = {"ok": True, **output}
        else:
            failures.append(error)
            parts[name] = {
                "ok": False,
                "error": {"code": error.code, "reason": error.reason, "message": error.message},
            }
    failed = [n for n in names if not parts[n]["ok"]]
    if failures and (len(failures) == len(jobs) or pattern.require_all):
        if all(lost_dependency(e) for e in failures):
            raise failures[0]  # every part lost its backing service: say so, don't mask it
        raise ToolFailed(
            f"hybrid pattern {pattern.name!r}: parts failed: {', '.join(failed)}",
            {"pattern": pattern.name, "failed_parts": failed, "parts": parts},
        )
    return {"parts": parts, "partial": bool(failures), "failed_parts": failed}


async def _part(job: Any) -> tuple[dict[str, Any] | None, TMWSError | None]:
    """Run one hybrid part, turning our errors into a per-part report."""
    try:
        return await job, None
    except TMWSError as exc:
        return None, exc


_MISSING = object()


def _fill(value: Any, values: Mapping[str, str]) -> Any:
    """Substitute `{query}` and trigger groups into a string argument.

    An argument naming a group the matching trigger did not capture is left out (`_MISSING`),
    so the tool's own default applies; non-string arguments pass unchanged.
    """
    if not isinstance(value, str):
        return value
    names = {name for _, name, _, _ in string.Formatter().parse(value) if name}
    if names - values.keys():
        return _MISSING
    return value.format_map(values)
