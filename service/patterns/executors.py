"""Run a routed pattern: infrastructure (one tool), memory (recall/store), hybrid (both).

Executors call registered tools through the ToolRegistry with the caller's context, so
namespace rules, validation and cache invalidation of those tools apply unchanged. Errors
are our own (`TMWSError`); the engine decides between the LLM fallback and the client.
"""

from __future__ import annotations

import asyncio
import string
from collections.abc import Mapping
from typing import Any

from service.bugs import bugs_of
from service.errors import DependencyUnavailable, ExecutionTimeout, TMWSError, ToolFailed
from service.patterns.registry import MemoryOp, Pattern, ToolCall
from service.resilience.timeouts import run_on_past_timeout
from service.tools.registry import CallContext

RECALL_TOOL = "recall_memory"
STORE_TOOL = "store_memory"


async def run_pattern(
    pattern: Pattern,
    query: str,
    groups: Mapping[str, str],
    ctx: CallContext,
    *,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """Execute `pattern` within its timeout; a late one is cancelled and `ExecutionTimeout` raised."""
    budget = pattern.timeout_s if timeout_s is None else timeout_s
    work = _dispatch(pattern, query, groups, ctx)
    if bugs_of(ctx.services).no_cancel_on_timeout:
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
    pattern: Pattern, query: str, groups: Mapping[str, str], ctx: CallContext
) -> dict[str, Any]:
    values = {"query": query, "text": groups.get("text", query), **groups}
    if pattern.type == "infrastructure":
        return await _call(pattern.calls[0], values, ctx)
    assert pattern.memory is not None  # guaranteed by registry validation
    if pattern.type == "memory":
        return await _memory(pattern.memory, values, ctx)
    return await _hybrid(pattern, values, ctx)


async def _call(call: ToolCall, values: Mapping[str, str], ctx: CallContext) -> dict[str, Any]:
    arguments = {}
    for key, value in call.arguments.items():
        filled = _fill(value, values)
        if filled is not _MISSING:
            arguments[key] = filled
    output = await ctx.services.tools.call(call.tool, arguments, ctx)
    return {"tool": call.tool, "output": output}


async def _memory(op: MemoryOp, values: Mapping[str, str], ctx: CallContext) -> dict[str, Any]:
    if op.action == "store":
        arguments: dict[str, Any] = {"content": _fill_text(op.content, values)}
        if op.tags:
            arguments["tags"] = list(op.tags)
        output = await ctx.services.tools.call(STORE_TOOL, arguments, ctx)
        return {"action": "store", "output": output}
    arguments = {"query": _fill_text(op.query, values), "limit": op.limit}
    if op.min_similarity:
        arguments["min_similarity"] = op.min_similarity
    if op.tags:
        arguments["tags"] = list(op.tags)
    output = await ctx.services.tools.call(RECALL_TOOL, arguments, ctx)
    return {"action": "recall", "output": output}


def _fill_text(template: str, values: Mapping[str, str]) -> str:
    """Memory text; an uncaptured group (a semantic match captures none) becomes the query."""
    names = {name for _, name, _, _ in string.Formatter().parse(template) if name}
    return template.format_map({**dict.fromkeys(names, values["query"]), **values})


async def _hybrid(pattern: Pattern, values: Mapping[str, str], ctx: CallContext) -> dict[str, Any]:
    assert pattern.memory is not None
    names = ["memory", *(c.tool for c in pattern.calls)]
    jobs = [_memory(pattern.memory, values, ctx), *(_call(c, values, ctx) for c in pattern.calls)]
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
        if all(isinstance(e, DependencyUnavailable) for e in failures):
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
