"""`invalidate_cache` and `get_cache_stats`: the cache's two tools."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.cache import GLOBAL_NAMESPACE
from service.context import CallContext
from service.errors import CacheUnavailable
from service.namespaces import is_team, resolve_namespace
from service.tools.permissions import require_admin
from service.tools.registry import ToolArgs, ToolRegistry, ToolSpec

MAX_NAMESPACE_CHARS = 200
MAX_REASON_CHARS = 200


class InvalidateCacheArgs(ToolArgs):
    namespace: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_NAMESPACE_CHARS,
        description='Namespace whose cached answers to drop; default your own; "*" = every one.',
    )
    reason: str = Field(
        default="invalidate_cache tool",
        max_length=MAX_REASON_CHARS,
        description="Why, carried in the invalidation message.",
    )


class CacheStatsArgs(ToolArgs):
    pass


async def invalidate_cache(ctx: CallContext, args: InvalidateCacheArgs) -> dict[str, Any]:
    """Bump the namespace generation; with Redis down, flush this instance's L1 and say degraded."""
    namespace = _target(ctx, args.namespace)  # rights first: a refusal must not depend on Redis
    cache = ctx.services.cache
    if cache is None:
        raise CacheUnavailable("cache unavailable: this server runs without a cache")
    generation = await cache.bump_generation_or_flush_local(namespace, args.reason)
    return {
        "namespace": namespace,
        "generation": generation,
        "degraded": generation is None,
        "instance_id": ctx.instance_id,
    }


def _target(ctx: CallContext, requested: str | None) -> str:
    """Own and member team namespaces for everyone; "*" and other agents' only for admins.

    Invalidation never breaks correctness, but dropping everyone's answers at will is a cheap
    way to load the database for every other agent.
    """
    if requested is None or requested == ctx.namespace:
        return ctx.namespace
    if requested == GLOBAL_NAMESPACE:
        require_admin(ctx, 'invalidate_cache("*")')
        return requested
    if is_team(requested):
        return resolve_namespace(ctx, requested)
    require_admin(ctx, "invalidate_cache of another agent's namespace")
    return requested


async def get_cache_stats(ctx: CallContext, args: CacheStatsArgs) -> dict[str, Any]:
    """Hit/miss/stale counters, L1 size, Redis and breaker state of this instance."""
    cache = ctx.services.cache
    if cache is None:
        return {"enabled": False, "instance_id": ctx.instance_id}
    stats: dict[str, Any] = cache.stats()
    lookups = stats["hits_l1"] + stats["hits_l2"] + stats["misses"]
    hit_rate = (stats["hits_l1"] + stats["hits_l2"]) / lookups if lookups else None
    return {"enabled": True, "hit_rate": hit_rate, **stats}


def register_cache_tools(registry: ToolRegistry) -> None:
    """Add `invalidate_cache` and `get_cache_stats`."""
    registry.register(
        ToolSpec(
            "invalidate_cache",
            "Drop cached answers of a namespace (default yours) on every instance.",
            InvalidateCacheArgs,
            invalidate_cache,
        )
    )
    registry.register(
        ToolSpec(
            "get_cache_stats",
            "Cache hit/miss/stale counters, L1 size, Redis and breaker state of this instance.",
            CacheStatsArgs,
            get_cache_stats,
        )
    )
