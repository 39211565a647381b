"""Session-wide real infrastructure: one embedded PostgreSQL + pgvector and one Redis for the run.

With `TMWS_DATABASE_URL` and `TMWS_REDIS_URL` set, tests use those servers instead (fault tests
that stop servers always start a private embedded pair). Every server started here is stopped.

The servers' state lives outside pytest's temp root: every pytest session that starts on the
machine chmods `/tmp/pytest-of-<user>` to 0700, which would lock out PostgreSQL's unprivileged
user (`pgserver`) of a run already in progress.
"""

from __future__ import annotations

import os
import shutil
import tempfile
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
def infra_root() -> Iterator[Path]:
    """A folder for embedded servers' state, outside pytest's temp root; removed at the end."""
    root = Path(tempfile.mkdtemp(prefix="tmws-test-infra-"))
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def infra_dir(infra_root: Path) -> Path:
    """A fresh folder under `infra_root` for one test's embedded servers."""
    return Path(tempfile.mkdtemp(dir=infra_root))


@pytest.fixture(scope="session")
def infra(infra_root: Path) -> Iterator[EmbeddedInfra | ExternalInfra]:
    """The shared Redis + PostgreSQL for the whole test session."""
    db_url, redis_url = os.environ.get("TMWS_DATABASE_URL"), os.environ.get("TMWS_REDIS_URL")
    if db_url and redis_url:
        yield ExternalInfra(db_url, redis_url)
        return
    embedded = EmbeddedInfra.start(infra_root / "session")
    try:
        yield embedded
    finally:
        embedded.destroy()


@pytest.fixture
def private_infra(infra_dir: Path) -> Iterator[EmbeddedInfra]:
    """A throwaway embedded pair that a test may stop and restart (failover, DB loss)."""
    embedded = EmbeddedInfra.start(infra_dir / "infra")
    try:
        yield embedded
    finally:
        embedded.destroy()
