"""Builds a running server's parts from settings, and takes them down again.

URLs come from settings; without them the embedded default is started (or found running under
the state folder, e.g. after `tmws infra up`). Servers this process started, it also stops.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from typing import Any

from service import __version__
from service.config import Settings
from service.context import Services
from service.embedding import Embedder
from service.tools.registry import ToolRegistry

log = logging.getLogger(__name__)

#: /health's own database round trip (the probe must answer well inside a client's patience).
HEALTH_DB_DEADLINE_S = 2.0


def resolve_urls(settings: Settings, *, start: bool = True) -> tuple[str, str, Any]:
    """(database_url, redis_url, embedded infra this process owns and must stop, or None).

    Servers found running under the state folder are used as they are while their recorded
    owner (`tmws infra up`, or a live process) has them; servers whose owner died (a crashed
    `tmws serve`), or that run without a record, are adopted: this process stops them on exit.
    """
    if settings.database.url and settings.redis_url:
        return settings.database.url, settings.redis_url, None
    from service.infra.embedded import EmbeddedInfra, InfraError, read_infra_file

    state_dir = settings.state_dir.resolve()
    infra = EmbeddedInfra.create(state_dir)
    recorded = read_infra_file(state_dir)
    running = infra.postgres.running() and infra.redis.running()
    owned = None
    if not (running and recorded is not None and infra.owner_alive()):
        if not start:
            if running:
                return infra.database_url, infra.redis_url, None
            raise InfraError(
                f"no database URL given and no embedded servers running under {state_dir} "
                "(set TMWS_DATABASE_URL or run `tmws infra up`)"
            )
        infra.resume()  # left paused by a fault driver that died with the previous owner
        infra = EmbeddedInfra.start(state_dir, owner="process")
        owned = infra
    return (
        settings.database.url or infra.database_url,
        settings.redis_url or infra.redis_url,
        owned,
    )


def build_tool_registry(settings: Settings) -> ToolRegistry:
    """Every tool the server exposes, over WebSocket JSON-RPC and MCP alike."""
    from service.tools.agent_tools import register_agent_tools
    from service.tools.cache_tools import register_cache_tools
    from service.tools.memory_tools import register_memory_tools
    from service.tools.pattern_tools import register_pattern_tools
    from service.tools.task_tools import register_task_tools
    from service.tools.workflow_tools import register_workflow_tools

    registry = ToolRegistry()
    for register in (
        register_memory_tools,
        register_task_tools,
        register_workflow_tools,
        register_agent_tools,
        register_cache_tools,
    ):
        register(registry)
    # Last: it only adds fallbacks of tools no other module registered.
    register_pattern_tools(registry, enable_test_tools=settings.enable_test_patterns)
    return registry


async def start_services(settings: Settings) -> Services:
    """Connect to (or start) PostgreSQL and Redis, migrate, load the model and patterns."""
    from service.cache.coherent import CoherentCache
    from service.patterns.engine import build_pattern_engine
    from service.sessions import SessionRegistry
    from service.store import migrate
    from service.store.db import Database
    from service.store.startup import wait_for_database

    started = time.monotonic()
    database_url, redis_url, owned = await asyncio.to_thread(resolve_urls, settings)
    settings = settings.with_urls(database_url, redis_url)
    try:
        await wait_for_database(
            database_url,
            settings.database.startup_wait_s,
            settings.database.acquire_timeout_s,
        )
        await migrate.migrate(
            database_url,
            settings.state_dir.resolve() / "backups",
            vector_index=settings.database.vector_index,
        )
        embedder = Embedder(settings.embedding)
        await embedder.warm_up()
        db = await Database.connect(settings.database, bugs=settings.bugs)
        cache = await CoherentCache.start(
            redis_url, settings.cache, settings.instance_id, bugs=settings.bugs
        )
        tools = build_tool_registry(settings)
        # Built with what it reaches below it: the tools its patterns run, cache and store.
        patterns = await build_pattern_engine(settings, embedder, tools=tools, cache=cache, db=db)
        services = Services(
            settings=settings,
            tools=tools,
            embedder=embedder,
            db=db,
            cache=cache,
            sessions=SessionRegistry.from_limits(settings.limits),
            patterns=patterns,
            llm=patterns.llm,
            owned_infra=owned,
        )
        freeze_startup_objects()
    except BaseException:
        if owned is not None:
            await asyncio.to_thread(owned.stop)
        raise
    log.info(
        "TMWS %s instance %s ready in %.1fs (db %s, redis %s, auth %s)",
        __version__,
        settings.instance_id,
        time.monotonic() - started,
        _redact(database_url),
        redis_url,
        "enabled" if settings.auth_enabled else "DISABLED: open server, local use only",
    )
    return services


def freeze_startup_objects() -> None:
    """Move everything loaded so far out of the garbage collector's reach.

    The model, tokenizer, torch and the rest are ~470k tracked objects: every full collection
    walked them all, stopping the event loop for 260-300 ms (measured here) and making the p99
    of cached answers ~300 ms. Frozen, they are never scanned again (they live as long as the
    process anyway); a full collection of what requests allocate takes about a millisecond.
    """
    gc.collect()
    gc.freeze()


async def stop_services(services: Services) -> None:
    """Close pools and connections; stop embedded servers this process started."""
    if services.cache is not None:
        await services.cache.close()
    if services.db is not None:
        from service.store.executions import close_writer

        await close_writer(services.db)  # the queued learning record, bounded
        await services.db.close()
    if services.owned_infra is not None:
        await asyncio.to_thread(services.owned_infra.stop)


async def health(services: Services) -> dict[str, Any]:
    """Status of each dependency, breaker states, pool and cache figures."""
    from service.store.executions import writer_stats

    db_status = "unknown"
    if services.db is not None:
        try:
            await services.db.ping(deadline_s=HEALTH_DB_DEADLINE_S)
            db_status = "ok"
        except Exception as exc:  # health reports any failure as data, never raises
            db_status = f"unavailable: {_reason(exc)}"
    cache_stats = services.cache.stats() if services.cache is not None else {}
    redis_status = "degraded" if cache_stats.get("degraded") else "ok"
    status = "ok" if db_status == "ok" and redis_status == "ok" else "degraded"
    return {
        "status": status,
        "instance_id": services.instance_id,
        "server_version": __version__,
        "uptime_s": round(time.time() - services.started_at, 1),
        "auth": "enabled" if services.settings.auth_enabled else "disabled (open)",
        "postgres": db_status,
        "redis": redis_status,
        "pool": services.db.pool_stats() if services.db is not None else {},
        "learning_record": writer_stats(services.db) if services.db is not None else None,
        "breakers": {
            "postgresql": services.db.breaker.stats() if services.db is not None else None,
            "redis": cache_stats.get("breaker"),
        },
        "cache": cache_stats,
        "embedding": services.embedder.stats(),
        "sessions": services.sessions.stats() if services.sessions is not None else {},
    }


def _reason(exc: BaseException) -> str:
    """Never empty: a bare TimeoutError has no message of its own."""
    return str(exc) or type(exc).__name__


def _redact(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.split("@", 1)
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}@{host}"
