"""What the store-backed tools share: the database of a call, and the cache generation hooks."""

from __future__ import annotations

from service.cache import GLOBAL_NAMESPACE
from service.errors import DatabaseUnavailable
from service.store.db import Database
from service.tools.registry import CallContext


def database(ctx: CallContext) -> Database:
    """The call's `Database`, or `DatabaseUnavailable` when the server runs without one."""
    db = ctx.services.db
    if db is None:
        raise DatabaseUnavailable("database unavailable: this server has no database configured")
    return db


async def bump_version(
    ctx: CallContext, reason: str, namespace: str | None = None, *, shared: bool = False
) -> int | None:
    """After a committed write: advance the namespace generation so cached answers drop.

    A shared memory is visible from every namespace, so it also bumps the global generation
    that every cached answer depends on.
    """
    cache = ctx.services.cache
    if cache is None:
        return None
    # The row is already committed: with Redis down, failing the call would invite a duplicate
    # retry, so prefer the variant that flushes this instance's L1 and returns None instead.
    bump = getattr(cache, "bump_generation_or_flush_local", None) or cache.bump_generation
    if shared:
        await bump(GLOBAL_NAMESPACE, reason=reason)
    return await bump(namespace or ctx.namespace, reason=reason)


async def seen_version(ctx: CallContext, namespace: str | None = None) -> int | None:
    """Before a read: the generation the answer will reflect at least (read first on purpose:
    every write bumps only after commit, so a read started after seeing g includes all of g)."""
    cache = ctx.services.cache
    if cache is None:
        return None
    return await cache.generation(namespace or ctx.namespace)
