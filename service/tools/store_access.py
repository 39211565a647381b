"""What the store-backed tools share: the database of a call, and the cache generation hooks."""

from __future__ import annotations

from service.errors import DatabaseUnavailable
from service.store.db import Database
from service.tools.registry import CallContext


def database(ctx: CallContext) -> Database:
    """The call's `Database`, or `DatabaseUnavailable` when the server runs without one."""
    db = ctx.services.db
    if db is None:
        raise DatabaseUnavailable("database unavailable: this server has no database configured")
    return db


async def bump_version(ctx: CallContext, reason: str) -> int | None:
    """After a committed write: advance the namespace generation so cached answers drop."""
    cache = ctx.services.cache
    if cache is None:
        return None
    # The row is already committed: with Redis down, failing the call would invite a duplicate
    # retry, so prefer the variant that flushes this instance's L1 and returns None instead.
    bump = getattr(cache, "bump_generation_or_flush_local", None) or cache.bump_generation
    return await bump(ctx.namespace, reason=reason)


async def seen_version(ctx: CallContext) -> int | None:
    """Before a read: the generation the answer will reflect at least (read first on purpose:
    every write bumps only after commit, so a read started after seeing g includes all of g)."""
    cache = ctx.services.cache
    if cache is None:
        return None
    return await cache.generation(ctx.namespace)
