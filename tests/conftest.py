"""Session-wide real infrastructure: one embedded PostgreSQL + pgvector and one Redis for the run.

With `TMWS_DATABASE_URL` and `TMWS_REDIS_URL` set, tests use those servers instead (fault tests
that stop servers always start a private embedded pair). Every server started here is stopped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from service.infra.embedded import EmbeddedInfra


@dataclass(frozen=True)
class ExternalInfra:
    """Servers given by URL; they cannot be stopped by tests."""

    database_url: str
    redis_url: str


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedInfra | ExternalInfra]:
    """The shared Redis + PostgreSQL for the whole test session."""
    db_url, redis_url = os.environ.get("TMWS_DATABASE_URL"), os.environ.get("TMWS_REDIS_URL")
    if db_url and redis_url:
        yield ExternalInfra(db_url, redis_url)
        return
    embedded = EmbeddedInfra.start(tmp_path_factory.mktemp("infra"))
    try:
        yield embedded
    finally:
        embedded.destroy()


@pytest.fixture
def private_infra(tmp_path: Path) -> Iterator[EmbeddedInfra]:
    """A throwaway embedded pair that a test may stop and restart (failover, DB loss)."""
    embedded = EmbeddedInfra.start(tmp_path / "infra")
    try:
        yield embedded
    finally:
        embedded.destroy()
