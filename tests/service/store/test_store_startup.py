"""A starting server waits for PostgreSQL within a bound: it comes up once a frozen database
answers again, and fails with "database unavailable" when nothing answers within the bound."""

from __future__ import annotations

import asyncio
import time

import pytest

from service.errors import DatabaseUnavailable
from service.infra.embedded import EmbeddedInfra, free_port
from service.store.startup import wait_for_database


async def test_nothing_listening_fails_after_the_bound_with_the_last_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/tmws"
    failures: list[int] = []
    started = time.perf_counter()
    with pytest.raises(DatabaseUnavailable, match=r"^database unavailable: "):
        await wait_for_database(url, 1.0, 0.5, on_failure=lambda n, _: failures.append(n))
    took = time.perf_counter() - started
    assert 1.0 <= took < 5.0, took
    assert len(failures) >= 2, failures  # it retried inside the bound


async def test_a_zero_bound_tries_once() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/tmws"
    failures: list[int] = []
    with pytest.raises(DatabaseUnavailable):
        await wait_for_database(url, 0.0, 0.5, on_failure=lambda n, _: failures.append(n))
    assert failures == [1]


async def test_a_frozen_database_is_waited_for_until_it_answers(
    private_infra: EmbeddedInfra,
) -> None:
    url = private_infra.database_url
    assert await wait_for_database(url, 0.0, 2.0) == 1
    await asyncio.to_thread(private_infra.pause_postgres)
    failed = asyncio.Event()
    waiting = asyncio.create_task(
        wait_for_database(url, 60.0, 0.5, on_failure=lambda n, _: failed.set())
    )
    try:
        async with asyncio.timeout(30):
            await failed.wait()  # it saw the outage and keeps trying
        assert not waiting.done()
    finally:
        await asyncio.to_thread(private_infra.resume_postgres)
    async with asyncio.timeout(30):
        attempts = await waiting
    assert attempts >= 2
