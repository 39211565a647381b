"""The pub/sub listener: one task per instance on its own Redis connection.

It subscribes to `tmws:invalidate` (generation bumps) and `tmws:filled` (single-flight notes)
and hands each message to callbacks. When the connection drops it reports the loss, then
reconnects with backoff; every successful (re)subscription is reported too and awaited before
the listener says it is up, because messages sent while we were not subscribed are gone and the
owner must recover first (apply pending bumps, flush L1).

A SIGSTOP'd Redis keeps its sockets open: reads just time out, nothing errors. So after
`ping_interval_s` without any message the listener sends a PING on the subscribed connection
and counts the link lost if no PONG comes within `ping_timeout_s`.

The listener is also the owner's clock: `on_tick` is awaited after every poll, so recovery work
that does not come with a reconnect (the data path's breaker closing again, a pending bump) runs
in this one task, never concurrently with a re-subscription.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.cache.generations import InvalidationMessage
from service.cache.keys import FILLED_CHANNEL, INVALIDATE_CHANNEL
from service.resilience.lag import DEFAULT_STALL_S as STALL_S
from service.resilience.retry import Backoff

log = logging.getLogger(__name__)

#: What counts as "Redis went away" for the listener (anything else is a bug and propagates).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)

DEFAULT_POLL_S = 0.25
DEFAULT_PING_INTERVAL_S = 0.5
DEFAULT_PING_TIMEOUT_S = 1.0
DEFAULT_SUBSCRIBE_TIMEOUT_S = 2.0
_PING_TOKEN = "tmws-listener-health"


class ListenerState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    CLOSED = "closed"


class PingUnanswered(RedisTimeoutError):
    """The subscribed connection stayed silent past the PING deadline (a paused Redis)."""


class InvalidationListener:
    """Runs until `close()`; never gives up reconnecting."""

    def __init__(
        self,
        client: Redis,
        *,
        on_invalidate: Callable[[InvalidationMessage], None],
        on_filled: Callable[[str], None],
        on_subscribed: Callable[[bool], Awaitable[None]],
        on_lost: Callable[[BaseException], None],
        on_tick: Callable[[], Awaitable[None]],
        backoff: Backoff,
        poll_s: float = DEFAULT_POLL_S,
        ping_interval_s: float = DEFAULT_PING_INTERVAL_S,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        subscribe_timeout_s: float = DEFAULT_SUBSCRIBE_TIMEOUT_S,
        stalled_since: Callable[[float], float] | None = None,
    ) -> None:
        self._client = client
        self._on_invalidate = on_invalidate
        self._on_filled = on_filled
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._on_tick = on_tick
        self._backoff = backoff
        self._poll_s = poll_s
        self._ping_interval_s = ping_interval_s
        self._ping_timeout_s = ping_timeout_s
        self._subscribe_timeout_s = subscribe_timeout_s
        #: How long our own loop stalled since a time.monotonic() stamp (see resilience/lag.py).
        self._stalled_since = stalled_since or (lambda _since: 0.0)
        self.state = ListenerState.CONNECTING
        self.subscribed = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.connections = 0
        self.malformed = 0
        self.pings = 0
        self.pings_unanswered = 0
        self._task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tmws-cache-invalidation")

    async def close(self) -> None:
        self._closing.set()
        self.state = ListenerState.CLOSED
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        attempt = 0
        while not self._closing.is_set():
            pubsub = self._client.pubsub()
            try:
                await self._subscribe(pubsub)
                # First connection: nothing cached could have missed a message yet. Either way
                # the owner finishes its recovery before anyone may trust the listener.
                await self._on_subscribed(self.connections > 0)
                attempt = 0
                self.connections += 1
                self.state = ListenerState.UP
                self.disconnected.clear()
                self.subscribed.set()
                await self._pump(pubsub)
            except CONNECTION_ERRORS as exc:
                was_up = self.state is ListenerState.UP
                self.state = ListenerState.DOWN
                self.subscribed.clear()
                self.disconnected.set()
                if was_up or attempt == 0:
                    log.warning("cache pub/sub lost: %r; reconnecting", exc)
                self._on_lost(exc)
            finally:
                with contextlib.suppress(*CONNECTION_ERRORS):
                    await pubsub.aclose()
            pause = self._backoff.delay(attempt)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(pause):
                    await self._closing.wait()

    async def _subscribe(self, pubsub: PubSub) -> None:
        """Subscribe and wait for both confirmations, so 'up' really means 'receiving'."""
        await pubsub.subscribe(INVALIDATE_CHANNEL, FILLED_CHANNEL)
        confirmed: set[str] = set()
        async with asyncio.timeout(self._subscribe_timeout_s):
            while len(confirmed) < 2:
                msg = await pubsub.get_message(timeout=self._poll_s)
                if msg is not None and msg["type"] == "subscribe":
                    confirmed.add(str(msg["channel"]))
                elif msg is not None:
                    self._dispatch(msg)

    async def _pump(self, pubsub: PubSub) -> None:
        heard = time.monotonic()
        ping_sent: float | None = None
        while not self._closing.is_set():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=self._poll_s)
            now = time.monotonic()
            if msg is not None:
                heard, ping_sent = now, None  # any traffic proves the connection alive
                self._dispatch(msg)
            elif ping_sent is not None and self._stalled_since(ping_sent) >= STALL_S:
                ping_sent = now  # our loop stalled, not Redis: give the PONG a fresh deadline
            elif ping_sent is not None and now - ping_sent > self._ping_timeout_s:
                self.pings_unanswered += 1
                raise PingUnanswered(
                    f"no PONG within {self._ping_timeout_s:g}s on the pub/sub connection "
                    "(Redis paused or unreachable)"
                )
            if ping_sent is None and now - heard >= self._ping_interval_s:
                await pubsub.ping(_PING_TOKEN)
                self.pings += 1
                ping_sent = now
            await self._on_tick()

    def _dispatch(self, msg: dict[str, object]) -> None:
        if msg.get("type") != "message":
            return  # PONGs and (un)subscribe confirmations only prove the connection alive
        channel, data = str(msg["channel"]), msg["data"]
        if not isinstance(data, str | bytes):
            self.malformed += 1
            return
        try:
            if channel == INVALIDATE_CHANNEL:
                self._on_invalidate(InvalidationMessage.decode(data))
            elif channel == FILLED_CHANNEL:
                self._on_filled(str(json.loads(data)["key"]))
        except (ValueError, KeyError, TypeError):
            # A foreign or corrupt message must not kill the listener.
            self.malformed += 1
