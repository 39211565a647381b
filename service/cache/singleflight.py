"""Single-flight on a miss: one computation per key, first within a process, then across instances.

- `LocalFlights`: concurrent callers in one process share one task. The task is cancelled
  only when every caller waiting on it has gone (so a timed-out request frees its work).
- `RedisLock`: `SET lock token NX PX ttl`; released by a Lua compare-and-delete so a holder
  whose lock already expired cannot delete the next holder's lock.
- `FillWaiters`: the instance that filled a key publishes a "filled" note on `tmws:filled`;
  waiters on other instances wake on it instead of polling blindly (they still poll with a
  bound, because a note can be lost while the pub/sub connection reconnects).

The wait loop itself lives in `fill.py` (which asks `hits.py` what a valid L2 entry is): it polls
L2, retries the lock (so an expired lock of a dead holder is taken over) and, past the
lock's TTL, computes by itself.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from redis.asyncio import Redis

from service.cache.keys import FILLED_CHANNEL, lock_key

T = TypeVar("T")

#: KEYS: lock. ARGV: token, filled channel, filled message. Deletes only our own lock.
RELEASE_SCRIPT = """
local released = 0
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  released = 1
end
if ARGV[2] ~= '' then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return released
"""


@dataclass
class _Flight(Generic[T]):
    task: asyncio.Task[T]
    waiters: int = 0


class LocalFlights(Generic[T]):
    """Deduplicate concurrent computations of one key inside this process."""

    def __init__(self) -> None:
        self._flights: dict[str, _Flight[T]] = {}
        self.coalesced = 0

    def __len__(self) -> int:
        return len(self._flights)

    async def run(self, key: str, factory: Callable[[], Awaitable[T]]) -> tuple[T, bool]:
        """Result of the one flight for `key` and whether this caller joined an existing one."""
        flight = self._flights.get(key)
        joined = flight is not None
        if flight is None:
            flight = _Flight(asyncio.ensure_future(factory()))
            self._flights[key] = flight
            flight.task.add_done_callback(lambda _t, k=key, f=flight: self._forget(k, f))
        else:
            self.coalesced += 1
        flight.waiters += 1
        try:
            return await asyncio.shield(flight.task), joined
        finally:
            flight.waiters -= 1
            # Last interested caller left (timeout/cancel): stop the work so it frees resources.
            if flight.waiters == 0 and not flight.task.done():
                flight.task.cancel()

    def _forget(self, key: str, flight: _Flight[T]) -> None:
        if self._flights.get(key) is flight:
            del self._flights[key]


class RedisLock:
    """Cross-instance lock per result key with expiry and safe release."""

    def __init__(self, client: Redis, instance_id: str, ttl_s: float) -> None:
        if ttl_s <= 0:
            raise ValueError(f"lock ttl must be > 0, got {ttl_s}")
        self._client = client
        self.instance_id = instance_id
        self.ttl_ms = max(1, int(ttl_s * 1000))
        self._release = client.register_script(RELEASE_SCRIPT)

    async def acquire(self, key: str) -> str | None:
        """A token when this caller now holds the lock for `key`, else None."""
        token = f"{self.instance_id}:{uuid.uuid4().hex}"
        ok = await self._client.set(lock_key(key), token, nx=True, px=self.ttl_ms)
        return token if ok else None

    async def release(self, key: str, token: str, filled_note: str = "") -> bool:
        """Delete the lock if still ours; publish `filled_note` (if any) to wake waiters."""
        channel = FILLED_CHANNEL if filled_note else ""
        done = await self._release(keys=[lock_key(key)], args=[token, channel, filled_note])
        return bool(done)


class FillWaiters:
    """Per-key events set when a "filled" note for the key arrives over pub/sub."""

    def __init__(self) -> None:
        self._events: dict[str, asyncio.Event] = {}
        self.notes_received = 0

    def notify(self, key: str) -> None:
        """Wake everyone waiting on `key` (called by the pub/sub listener)."""
        self.notes_received += 1
        event = self._events.pop(key, None)
        if event is not None:
            event.set()

    def wake_all(self) -> None:
        """Wake every waiter (the listener reconnected and notes may have been lost)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()

    async def wait(self, key: str, timeout_s: float) -> bool:
        """True if a note for `key` arrived within `timeout_s`."""
        event = self._events.setdefault(key, asyncio.Event())
        try:
            async with asyncio.timeout(timeout_s):
                await event.wait()
            return True
        except TimeoutError:
            return False
