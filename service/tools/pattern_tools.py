"""Pattern tools: `execute_pattern`, `reload_patterns`, `get_pattern_stats`, and the small
infrastructure tools the catalogue's infrastructure patterns call.

Call `register_pattern_tools` after every other tool module has registered: the fallbacks for
`get_agent_info` and `get_cache_stats` are only added when no other module provides them.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from service.context import CallContext
from service.errors import CacheUnavailable, InternalError, ToolFailed
from service.patterns.registry import PatternConfigError
from service.tools.permissions import require_admin
from service.tools.registry import ToolArgs, ToolRegistry, ToolSpec

if TYPE_CHECKING:
    from service.cache.coherent import CoherentCache
    from service.patterns.engine import PatternEngine

SLOW_TOOL_MAX_S = 30.0


class ExecutePatternArgs(ToolArgs):
    query: str = Field(min_length=1, max_length=4000)
    execution_mode: Literal["fast", "balanced", "thorough"] = "balanced"
    use_cache: bool = True
    namespace: str | None = Field(default=None, max_length=200)


class ReloadPatternsArgs(ToolArgs):
    pass


class PatternStatsArgs(ToolArgs):
    pattern_name: str | None = Field(default=None, max_length=200)


class NoArgs(ToolArgs):
    pass


class ExecuteToolArgs(ToolArgs):
    probe: str = Field(default="test", max_length=200)


class SlowToolArgs(ToolArgs):
    seconds: float = Field(ge=0, le=SLOW_TOOL_MAX_S)


class FailToolArgs(ToolArgs):
    reason: str = Field(default="deliberate failure", max_length=500)


def _engine(ctx: CallContext) -> PatternEngine:
    engine = ctx.services.patterns
    if engine is None:
        raise InternalError("pattern engine is not configured on this server")
    return engine


async def execute_pattern(ctx: CallContext, args: ExecutePatternArgs) -> dict[str, Any]:
    """Route the query to a pattern (or the LLM) and run it."""
    return await _engine(ctx).execute(
        ctx,
        query=args.query,
        execution_mode=args.execution_mode,
        use_cache=args.use_cache,
        namespace=args.namespace,
    )


async def reload_patterns(ctx: CallContext, args: ReloadPatternsArgs) -> dict[str, Any]:
    """Re-read the catalogue, bump the registry version and invalidate every cached answer."""
    require_admin(ctx, "reload_patterns")
    engine = _engine(ctx)
    try:
        version = await engine.reload()
    except PatternConfigError as exc:
        raise ToolFailed(
            f"catalogue rejected, old patterns kept: {exc}", {"field": exc.field}
        ) from exc
    generation = None
    cache = ctx.services.cache
    if cache is not None:
        try:
            generation = await cache.bump_generation("*", reason="reload_patterns")
        except CacheUnavailable:
            # Keys carry the registry version, so no stale answer can be served meanwhile.
            generation = None
    return {"version": version, "patterns": len(engine.registry), "cache_generation": generation}


async def get_pattern_stats(ctx: CallContext, args: PatternStatsArgs) -> dict[str, Any]:
    """Per-pattern success rate, latency and demotion state on this instance."""
    engine = _engine(ctx)
    return {
        "instance_id": ctx.instance_id,
        "registry_version": engine.registry.version,
        "patterns": engine.stats.snapshot(args.pattern_name),
    }


async def system_status(ctx: CallContext, args: NoArgs) -> dict[str, Any]:
    """Instance health at a glance: uptime, dependencies, registry and tool counts."""
    services = ctx.services
    engine, db = services.patterns, services.db
    status: dict[str, Any] = {
        "status": "ok",
        "instance": ctx.instance_id,
        "uptime_s": round(time.time() - services.started_at, 1),
        "database": "configured" if db is not None else "absent",
        **_redis_status(services.cache),
        "tools": len(services.tools.names()),
        "patterns": len(engine.registry) if engine is not None else 0,
        "registry_version": engine.registry.version if engine is not None else None,
    }
    if db is not None:
        pool = db.pool_stats()
        status["db_pool"] = {k: pool[k] for k in ("size", "in_use", "max") if k in pool}
    return status


def _redis_status(cache: CoherentCache | None) -> dict[str, Any]:
    """Redis as the cache sees it (the cache owns the connections): ok, degraded or absent."""
    if cache is None:
        return {"redis": "absent", "cache": "disabled"}
    stats = cache.stats()
    return {
        "redis": "degraded" if stats.get("degraded") else "ok",
        "redis_state": stats.get("redis_state"),
        "cache": "enabled",
    }


async def list_tools(ctx: CallContext, args: NoArgs) -> dict[str, Any]:
    """Names of every tool this server exposes."""
    names = ctx.services.tools.names()
    return {"count": len(names), "tools": names}


async def execute_tool(ctx: CallContext, args: ExecuteToolArgs) -> dict[str, Any]:
    """The plan's "execute tool test": a cheap round trip through the tool layer.

    Nothing about the caller in the answer: the execute_tool pattern caches it globally, and a
    cached copy would hand the first caller's identity to everyone.
    """
    return {
        "tool": "execute_tool",
        "status": "ok",
        "probe": args.probe,
        "instance": ctx.instance_id,
        "server_time": datetime.now(UTC).isoformat(timespec="seconds"),
    }


async def server_time(ctx: CallContext, args: NoArgs) -> dict[str, Any]:
    """The server's clock in UTC and as a Unix timestamp."""
    now = datetime.now(UTC)
    return {
        "utc": now.isoformat(timespec="milliseconds"),
        "unix": round(now.timestamp(), 3),
        "instance": ctx.instance_id,
    }


async def agent_info_fallback(ctx: CallContext, args: NoArgs) -> dict[str, Any]:
    """Who the session is: agent, namespace, session and instance."""
    return {
        "agent_id": ctx.agent_id,
        "namespace": ctx.namespace,
        "session_id": ctx.session_id,
        "instance_id": ctx.instance_id,
    }


async def cache_stats_fallback(ctx: CallContext, args: NoArgs) -> dict[str, Any]:
    """Placeholder used only when the cache layer registers no `get_cache_stats` of its own."""
    return {
        "enabled": ctx.services.cache is not None,
        "instance": ctx.instance_id,
    }


async def slow_tool(ctx: CallContext, args: SlowToolArgs) -> dict[str, Any]:
    """Test only: hold a database connection (when there is one) for `seconds`."""
    db = ctx.services.db
    started = time.perf_counter()
    if db is None:
        await asyncio.sleep(args.seconds)
    else:
        # Holding a pooled connection is the point: a timeout must hand it back to the pool.
        async with db.acquire() as conn:
            await conn.execute("SELECT pg_sleep($1)", float(args.seconds))
    return {"slept_s": round(time.perf_counter() - started, 3)}


async def fail_tool(ctx: CallContext, args: FailToolArgs) -> dict[str, Any]:
    """Test only: always fails, to exercise the LLM fallback (plan 6.3)."""
    raise ToolFailed(f"fail_tool: {args.reason}")


def register_pattern_tools(registry: ToolRegistry, *, enable_test_tools: bool = False) -> None:
    """Register the pattern tools (and the test-only ones when asked)."""
    specs = [
        ToolSpec(
            "execute_pattern",
            "Answer a query with a cached pattern or the LLM fallback.",
            ExecutePatternArgs,
            execute_pattern,
        ),
        ToolSpec(
            "reload_patterns",
            "Reload the pattern catalogue and bump its version.",
            ReloadPatternsArgs,
            reload_patterns,
        ),
        ToolSpec(
            "get_pattern_stats",
            "Per-pattern success, latency and demotion statistics.",
            PatternStatsArgs,
            get_pattern_stats,
        ),
        ToolSpec(
            "system_status", "Instance health: uptime, dependencies, counts.", NoArgs, system_status
        ),
        ToolSpec("list_tools", "Names of every tool this server exposes.", NoArgs, list_tools),
        ToolSpec(
            "execute_tool",
            "Round trip through the tool layer (execute tool test).",
            ExecuteToolArgs,
            execute_tool,
        ),
        ToolSpec("server_time", "The server clock in UTC.", NoArgs, server_time),
    ]
    optional = [
        ToolSpec(
            "get_agent_info",
            "Who the session is: agent, namespace, instance.",
            NoArgs,
            agent_info_fallback,
        ),
        ToolSpec(
            "get_cache_stats", "Cache statistics (placeholder).", NoArgs, cache_stats_fallback
        ),
    ]
    if enable_test_tools:
        specs += [
            ToolSpec(
                "slow_tool",
                "Test only: hold a DB connection for N seconds.",
                SlowToolArgs,
                slow_tool,
            ),
            ToolSpec("fail_tool", "Test only: always fails.", FailToolArgs, fail_tool),
        ]
    for spec in specs:
        registry.register(spec)
    for spec in optional:
        if spec.name not in registry:
            registry.register(spec)
