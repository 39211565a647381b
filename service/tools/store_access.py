"""What the store-backed tools share: the database of a call, and the cache generation hooks."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from service.cache import GLOBAL_NAMESPACE
from service.context import CallContext
from service.errors import DatabaseUnavailable, ExecutionTimeout
from service.store.db import Database


def database(ctx: CallContext) -> Database:
    """The call's `Database`, or `DatabaseUnavailable` when the server runs without one."""
    db = ctx.services.db
    if db is None:
        raise DatabaseUnavailable("database unavailable: this server has no database configured")
    return db


def check_writable(ctx: CallContext) -> None:
    """Before a write touches the database: strict mode refuses one the cache could not announce
    (-32002 `cache_unavailable`, `applied: false`)."""
    cache = ctx.services.cache
    if cache is not None:
        cache.check_writable()


async def bump_version(
    ctx: CallContext, reason: str, namespace: str | None = None, *, shared: bool = False
) -> int | None:
    """After a committed write: advance the namespace generation so cached answers drop.

    A shared memory is visible from every namespace, so it also bumps the global generation
    that every cached answer depends on. If Redis fails now, strict mode raises -32002 with
    `applied: true` and eventual mode returns None; the bump stays pending (service/cache/link.py).
    """
    cache = ctx.services.cache
    if cache is None:
        return None
    namespaces = [GLOBAL_NAMESPACE] if shared else []
    return await cache.announce_write([*namespaces, namespace or ctx.namespace], reason)


@asynccontextmanager
async def write_outcome(
    ctx: CallContext, reason: str, namespace: str | None = None, *, shared: bool = False
) -> AsyncIterator[None]:
    """Around a database write: if it ends with its outcome unknown (timed out, connection lost,
    cancelled), announce it once the database answers again, since a paused server may still
    commit it when it resumes (a bump without a write only costs a cache miss)."""
    try:
        yield
    except (ExecutionTimeout, DatabaseUnavailable, asyncio.CancelledError) as exc:
        db, cache = ctx.services.db, ctx.services.cache
        refused = isinstance(exc, DatabaseUnavailable) and "breaker" in exc.data
        if db is not None and cache is not None and not refused:
            db.when_reachable(
                lambda: bump_version(ctx, f"{reason} (outcome unknown)", namespace, shared=shared)
            )
        raise


async def seen_version(ctx: CallContext, namespace: str | None = None) -> int | None:
    """Before a read: the generation the answer will reflect at least (read first on purpose:
    every write bumps only after commit, so a read started after seeing g includes all of g)."""
    cache = ctx.services.cache
    if cache is None:
        return None
    return await cache.generation(namespace or ctx.namespace)
