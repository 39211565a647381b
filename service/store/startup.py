"""Waiting for PostgreSQL at start-up, within a bound.

A server (re)started while PostgreSQL is stopped or frozen — Ray restarting a killed instance
during a database outage, a compose stack whose database comes up last — would otherwise fail
its start at once and stay down after the database is back. It waits instead, up to
`TMWS_DB_STARTUP_WAIT` seconds, logging each failed attempt, and fails with the last
"database unavailable" error when the bound passes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from service.errors import DatabaseUnavailable
from service.store.db import UNAVAILABLE_ERRORS, connect_once, unavailable

log = logging.getLogger(__name__)

#: Pause between attempts: doubling from the first to the last.
FIRST_PAUSE_S = 0.25
LAST_PAUSE_S = 2.0


async def wait_for_database(
    url: str,
    bound_s: float,
    attempt_timeout_s: float,
    on_failure: Callable[[int, DatabaseUnavailable], None] | None = None,
) -> int:
    """Return the attempts it took for PostgreSQL to answer `SELECT 1`; after `bound_s` (0: one
    attempt), raise the last attempt's `DatabaseUnavailable`."""
    deadline = time.monotonic() + max(0.0, bound_s)
    pause = FIRST_PAUSE_S
    attempt = 0
    while True:
        attempt += 1
        left = deadline - time.monotonic()
        try:
            await _probe(
                url, max(0.1, min(attempt_timeout_s, left)) if left > 0 else attempt_timeout_s
            )
            if attempt > 1:
                log.info("PostgreSQL answered after %d attempts", attempt)
            return attempt
        except DatabaseUnavailable as exc:
            if on_failure is not None:
                on_failure(attempt, exc)
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            log.warning(
                "PostgreSQL not reachable yet (attempt %d: %s); retrying for up to %.0fs more",
                attempt,
                exc,
                left,
            )
            await asyncio.sleep(min(pause, left))
            pause = min(pause * 2, LAST_PAUSE_S)


async def _probe(url: str, timeout_s: float) -> None:
    conn = await connect_once(url, timeout_s)
    try:
        await asyncio.wait_for(conn.fetchval("SELECT 1"), timeout_s)
    except TimeoutError as exc:
        raise DatabaseUnavailable(f"database unavailable: no answer within {timeout_s}s") from exc
    except UNAVAILABLE_ERRORS as exc:
        raise unavailable(exc) from exc
    finally:
        conn.terminate()
