"""Cache test fixtures: a factory of `CoherentCache` "instances" on a real Redis, closed at the end."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from service.bugs import InjectedBugs
from service.cache.coherent import CoherentCache
from service.config import CacheSettings
from service.infra.embedded import RedisServer, free_port

MakeCache = Callable[..., Awaitable[CoherentCache]]


@pytest.fixture
def namespace() -> str:
    """A namespace no other test uses, so tests can share one Redis."""
    return f"ns-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def redis_url(infra: Any) -> str:
    return str(infra.redis_url)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private Redis this test may stop and restart on the same port."""
    server = RedisServer(tmp_path / "redis", free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def make_cache(redis_url: str) -> AsyncIterator[MakeCache]:
    """`await make_cache(mode=..., url=..., bugs=..., **start_kwargs)` -> a started cache."""
    made: list[CoherentCache] = []

    async def make(
        mode: str = "strict",
        *,
        url: str | None = None,
        skip: bool = False,
        instance_id: str | None = None,
        bugs: InjectedBugs | None = None,
        **kwargs: Any,
    ) -> CoherentCache:
        settings = CacheSettings(mode=mode)  # type: ignore[arg-type]
        if skip:
            bugs = InjectedBugs(skip_publish=True)
        cache = await CoherentCache.start(
            url or redis_url,
            settings,
            instance_id or f"inst-{len(made)}-{uuid.uuid4().hex[:6]}",
            bugs=bugs,
            **kwargs,
        )
        made.append(cache)
        return cache

    yield make
    await asyncio.gather(*(c.close() for c in made))


class Source:
    """The 'database' behind a cached answer: a version writers advance, computes counted."""

    def __init__(self) -> None:
        self.version = 1
        self.computes = 0

    async def compute(self) -> dict[str, Any]:
        self.computes += 1
        return {"data_version": self.version}


@pytest.fixture
def source() -> Source:
    return Source()
