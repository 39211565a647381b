"""Tool fixtures: a real Services container (PostgreSQL pool, MiniLM embedder) on a private database."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.config import DatabaseSettings, Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.store.db import Database
from service.store.migrate import migrate
from service.tools.agent_tools import register_agent_tools
from service.tools.memory_tools import register_memory_tools
from service.tools.registry import ToolRegistry
from service.tools.task_tools import register_task_tools
from service.tools.workflow_tools import register_workflow_tools


@pytest.fixture(scope="module")
async def tools_database_url(
    infra: object, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """A migrated database created for this module and dropped after it."""
    base = infra.database_url  # type: ignore[attr-defined]
    name = f"tmws_tools_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            url = urlunsplit(urlsplit(base)._replace(path=f"/{name}"))
            await migrate(url, Path(tmp_path_factory.mktemp("backups")))
            yield url
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def build_registry() -> ToolRegistry:
    """The four tool groups this package owns."""
    registry = ToolRegistry()
    for register in (
        register_memory_tools,
        register_task_tools,
        register_workflow_tools,
        register_agent_tools,
    ):
        register(registry)
    return registry


@pytest.fixture(scope="module")
async def services(tools_database_url: str) -> AsyncIterator[Services]:
    """Settings, the tools, a warmed-up embedder and a 10/30 pool; no cache."""
    settings = Settings(database=DatabaseSettings(url=tools_database_url))
    embedder = Embedder()
    await embedder.warm_up()
    db = await Database.connect(settings.database)
    try:
        yield Services(settings=settings, tools=build_registry(), embedder=embedder, db=db)
    finally:
        await db.close()


@pytest.fixture
def make_ctx(services: Services) -> Callable[[str], CallContext]:
    """Build a CallContext for an agent on a fresh session."""

    def build(agent_id: str) -> CallContext:
        return CallContext(
            agent_id=agent_id,
            session_id=f"sess-{uuid.uuid4().hex[:8]}",
            instance_id=services.instance_id,
            services=services,
        )

    return build
