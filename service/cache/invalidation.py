"""The pub/sub listener: one task per instance on its own Redis connection.

It subscribes to `tmws:invalidate` (generation bumps) and `tmws:filled` (single-flight
notes) and hands each message to callbacks. When the connection drops it reports the loss,
then reconnects with backoff; every successful (re)subscription is reported too, because
messages sent while we were not subscribed are gone and the owner must flush L1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from enum import StrEnum

from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from service.cache.generations import InvalidationMessage
from service.cache.keys import FILLED_CHANNEL, INVALIDATE_CHANNEL
from service.resilience.retry import Backoff

log = logging.getLogger(__name__)

#: What counts as "Redis went away" for the listener (anything else is a bug and propagates).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
)

_POLL_S = 1.0


class ListenerState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"
    CLOSED = "closed"


class InvalidationListener:
    """Runs until `close()`; never gives up reconnecting."""

    def __init__(
        self,
        client: Redis,
        *,
        on_invalidate: Callable[[InvalidationMessage], None],
        on_filled: Callable[[str], None],
        on_subscribed: Callable[[bool], None],
        on_lost: Callable[[BaseException], None],
        backoff: Backoff,
    ) -> None:
        self._client = client
        self._on_invalidate = on_invalidate
        self._on_filled = on_filled
        self._on_subscribed = on_subscribed
        self._on_lost = on_lost
        self._backoff = backoff
        self.state = ListenerState.CONNECTING
        self.subscribed = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.connections = 0
        self.malformed = 0
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
                attempt = 0
                self.connections += 1
                self.state = ListenerState.UP
                self.disconnected.clear()
                self.subscribed.set()
                # First connection: nothing cached could have missed a message yet.
                self._on_subscribed(self.connections > 1)
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
        async with asyncio.timeout(5.0):
            while len(confirmed) < 2:
                msg = await pubsub.get_message(timeout=_POLL_S)
                if msg is not None and msg["type"] == "subscribe":
                    confirmed.add(str(msg["channel"]))
                elif msg is not None:
                    self._dispatch(msg)

    async def _pump(self, pubsub: PubSub) -> None:
        while not self._closing.is_set():
            msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_POLL_S)
            if msg is not None:
                self._dispatch(msg)

    def _dispatch(self, msg: dict[str, object]) -> None:
        if msg.get("type") != "message":
            return
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
