"""Store fixtures: a private, migrated database per test module on the session's PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from service.config import DatabaseSettings
from service.store.db import Database
from service.store.migrate import migrate


def database_url_for(base_url: str, name: str) -> str:
    """`base_url` pointing at database `name` instead."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@asynccontextmanager
async def temporary_database(base_url: str) -> AsyncIterator[str]:
    """Create an empty database next to `base_url`'s, yield its URL, drop it afterwards."""
    name = f"tmws_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield database_url_for(base_url, name)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="module")
async def fresh_database_url(infra: object) -> AsyncIterator[str]:
    """An empty database created for this module and dropped after it."""
    async with temporary_database(infra.database_url) as url:  # type: ignore[attr-defined]
        yield url


@pytest.fixture
async def empty_database_url(infra: object) -> AsyncIterator[str]:
    """An empty database for one test."""
    async with temporary_database(infra.database_url) as url:  # type: ignore[attr-defined]
        yield url


@pytest.fixture(scope="module")
async def migrated_url(fresh_database_url: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The module's database at the latest schema version."""
    await migrate(fresh_database_url, Path(tmp_path_factory.mktemp("backups")))
    return fresh_database_url


@pytest.fixture(scope="module")
async def db(migrated_url: str) -> AsyncIterator[Database]:
    """A pool sized like production (10, growing to 30) on the module's database."""
    database = await Database.connect(DatabaseSettings(url=migrated_url, pool_min=10, pool_max=30))
    try:
        yield database
    finally:
        await database.close()
