"""The shared Redis and PostgreSQL of a run: given by URL, or the embedded default started once here.

The driver (on the head node under `ray job submit`) resolves the URLs once, runs migrations
once, and passes the URLs to every `ServiceInstance` as settings. The embedded default listens
on 127.0.0.1, so it serves a one-machine cluster; a multi-machine cluster needs
`TMWS_DATABASE_URL` / `TMWS_REDIS_URL` that every node can reach.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from service.config import Settings

log = logging.getLogger(__name__)


@dataclass
class SharedInfra:
    """URLs every instance uses, and the embedded servers we started (None when given by URL)."""

    database_url: str
    redis_url: str
    owned: Any = None
    startup_s: float = 0.0

    @property
    def embedded(self) -> bool:
        return self.owned is not None

    def stop(self) -> None:
        """Stop the embedded servers this run started; URL-given servers are left alone."""
        if self.owned is not None:
            owned, self.owned = self.owned, None
            owned.stop()


def resolve_infra(
    settings: Settings, state_dir: Path | None = None, *, migrate: bool = True
) -> SharedInfra:
    """Use the URLs in `settings`, else start (or find running) the embedded pair under `state_dir`."""
    from service.bootstrap import resolve_urls

    if state_dir is not None:
        settings = replace(settings, state_dir=state_dir)
    started = time.monotonic()
    database_url, redis_url, owned = resolve_urls(settings, start=True)
    infra = SharedInfra(database_url, redis_url, owned)
    try:
        if migrate:
            run_migrations(database_url, settings.state_dir.resolve() / "backups")
    except BaseException:
        infra.stop()
        raise
    infra.startup_s = time.monotonic() - started
    where = "embedded (started here)" if owned is not None else "given/running"
    log.info("infra %s: db and redis ready in %.1fs", where, infra.startup_s)
    return infra


def run_migrations(database_url: str, backup_dir: Path) -> None:
    """Apply pending schema migrations once, before any instance starts."""
    from service.store.migrate import migrate

    report = asyncio.run(migrate(database_url, backup_dir))
    log.info("migrations: %s", getattr(report, "message", report))
