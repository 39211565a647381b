"""A loopback asyncio TCP fault proxy: one listening port per link (e.g. `inst-1/redis`), every
connection of that instance to that server goes through it, and faults change how bytes flow.

Why a proxy and not `tc netem` in network namespaces: creating namespaces and qdiscs needs
CAP_NET_ADMIN, which this sandbox (and most CI runners) do not grant, and netem cannot see
Redis frames, so it could not drop one pub/sub message and keep the connection intact. The
proxy runs in the driver's process (a thread with its own event loop) and binds 127.0.0.1 only,
so it works where instances run on the driver's machine (the local Ray cluster; a multi-node
cluster would need the proxy on each node — not built).

At the socket level (both directions unless said):
- latency D±J: each chunk read is written D±J ms later (uniform jitter; order kept, so a chunk
  never overtakes the one before it);
- bandwidth R: after writing n bytes the pump waits n/R s before the next write;
- reset: every open connection is closed with an RST (SO_LINGER 0), and while the fault lasts
  each new connection is accepted and reset at once;
- partition (blackhole): connections stay open and bytes are read but nothing is forwarded;
  new connections are accepted and not connected upstream. At heal the held bytes are delivered
  (as TCP retransmission would after a partition), unless a peer gave up and closed meanwhile;
- drop/delay invalidations (Redis links only): the server→client stream of a connection that
  sent SUBSCRIBE is cut into RESP frames; a fraction of the pub/sub deliveries is dropped, or
  held for the delay (the frames behind it wait too, as on a slow link). Every other frame and
  every other connection is untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from cluster.nemesis.resp import FrameCutter, RespError, is_subscribe_command, pubsub_kind

log = logging.getLogger(__name__)

_CHUNK = 65536
#: A bandwidth-limited pump writes in slices of this many seconds' worth of bytes.
_PACE_S = 0.05


@dataclass(frozen=True)
class LinkFaults:
    """What is wrong with one link right now (all zero: a clean pass-through)."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    bytes_per_s: float = 0.0
    partition: bool = False
    reset: bool = False
    drop_fraction: float = 0.0
    delay_ms: float = 0.0
    delay_fraction: float = 0.0


@dataclass
class LinkCounters:
    connections: int = 0
    resets: int = 0
    pubsub_seen: int = 0
    pubsub_dropped: int = 0
    pubsub_delayed: int = 0
    bytes_up: int = 0
    bytes_down: int = 0

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    subscriber: bool = False
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN (SO_LINGER on, timeout 0)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


class Link:
    """One proxied server address; runs on the hub's event loop."""

    def __init__(self, name: str, upstream: tuple[str, int], *, resp: bool, seed: int) -> None:
        self.name = name
        self.upstream = upstream
        self.resp = resp
        self.faults = LinkFaults()
        self.counters = LinkCounters()
        self.port = 0
        self._rng = random.Random(seed)
        self._conns: set[_Conn] = set()
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    def set(self, faults: LinkFaults) -> None:
        """Change the link's faults (on the loop)."""
        was_reset = self.faults.reset
        self.faults = faults
        if faults.partition:
            self._flowing.clear()
        else:
            self._flowing.set()
        if faults.reset and not was_reset:
            for conn in list(self._conns):
                self._reset(conn)

    def _reset(self, conn: _Conn) -> None:
        self.counters.resets += 1
        _rst(conn.client)
        if conn.upstream is not None:
            _rst(conn.upstream)
        for task in conn.tasks:
            task.cancel()
        self._conns.discard(conn)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counters.connections += 1
        conn = _Conn(writer)
        if self.faults.reset:
            self.counters.resets += 1
            _rst(writer)
            return
        self._conns.add(conn)
        try:
            # A partitioned server is unreachable: the connect waits for the heal.
            await self._flowing.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                _rst(writer)  # the server itself refuses (stopped): the client sees a reset
                return
            conn.upstream = up_writer
            conn.tasks = [
                asyncio.current_task(),  # type: ignore[list-item]
            ]
            up = asyncio.ensure_future(self._pump(reader, up_writer, conn, upward=True))
            down = asyncio.ensure_future(self._pump(up_reader, writer, conn, upward=False))
            conn.tasks += [up, down]
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            pass
        finally:
            for task in conn.tasks[1:]:
                task.cancel()
            for w in (writer, conn.upstream):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
            self._conns.discard(conn)

    def _delay_s(self) -> float:
        f = self.faults
        if f.latency_ms <= 0 and f.jitter_ms <= 0:
            return 0.0
        return max(0.0, f.latency_ms + self._rng.uniform(-f.jitter_ms, f.jitter_ms)) / 1000.0

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        conn: _Conn,
        *,
        upward: bool,
    ) -> None:
        """Read chunks, stamp each with its release time, and let the writer task send them."""
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        sender = asyncio.ensure_future(self._send(queue, writer, upward=upward))
        cutter = FrameCutter() if (self.resp and not upward) else None
        last_release = 0.0
        try:
            while True:
                data = await reader.read(_CHUNK)
                if not data:
                    break
                now = time.monotonic()
                if upward:
                    self.counters.bytes_up += len(data)
                    if self.resp and not conn.subscriber and is_subscribe_command(data):
                        conn.subscriber = True
                else:
                    self.counters.bytes_down += len(data)
                pieces: list[tuple[float, bytes]] = [(0.0, data)]
                if cutter is not None:
                    try:
                        frames = cutter.feed(data)
                        if conn.subscriber:
                            pieces = self._filter_pubsub(frames, now)
                        else:
                            cutter.passed_through()  # bytes went out whole, boundaries kept
                    except RespError as exc:
                        log.warning(
                            "proxy %s: not RESP (%s); passing bytes through", self.name, exc
                        )
                        pieces = [(0.0, cutter.take_rest())] if conn.subscriber else pieces
                        cutter = None
                for extra, piece in pieces:
                    release = max(last_release, now + self._delay_s() + extra)
                    last_release = release
                    queue.put_nowait((release, piece))
        finally:
            queue.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    def _filter_pubsub(self, frames: list[bytes], now: float) -> list[tuple[float, bytes]]:
        f = self.faults
        out: list[tuple[float, bytes]] = []
        for frame in frames:
            if pubsub_kind(frame) is not None:
                self.counters.pubsub_seen += 1
                if f.drop_fraction > 0 and self._rng.random() < f.drop_fraction:
                    self.counters.pubsub_dropped += 1
                    continue
                if f.delay_ms > 0 and self._rng.random() < f.delay_fraction:
                    self.counters.pubsub_delayed += 1
                    out.append((f.delay_ms / 1000.0, frame))
                    continue
            out.append((0.0, frame))
        return out

    async def _send(
        self,
        queue: asyncio.Queue[tuple[float, bytes] | None],
        writer: asyncio.StreamWriter,
        *,
        upward: bool,
    ) -> None:
        while True:
            item = await queue.get()
            if item is None:
                with contextlib.suppress(Exception):
                    writer.write_eof()
                return
            release, data = item
            wait = release - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)  # the injected latency itself
            await self._flowing.wait()  # a partition holds the bytes
            while data:
                rate = self.faults.bytes_per_s
                piece = data[: max(1, int(rate * _PACE_S))] if rate > 0 else data
                data = data[len(piece) :]
                if rate > 0:
                    await asyncio.sleep(len(piece) / rate)  # the bandwidth limit itself
                writer.write(piece)
                await writer.drain()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            for task in conn.tasks:
                task.cancel()
            for w in (conn.client, conn.upstream):
                if w is not None:
                    with contextlib.suppress(Exception):
                        w.close()
        self._conns.clear()


class ProxyHub:
    """Every link of a run, on one event loop in a daemon thread; thread-safe controls."""

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.links: dict[str, Link] = {}
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="nemesis-proxy")
        self._thread.daemon = True
        self._thread.start()
        self._closed = False

    def _call(self, fn: Callable[[], Any], timeout_s: float = 10.0) -> Any:
        async def run() -> Any:
            result = fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout_s)

    def link(self, name: str, host: str, port: int, *, resp: bool) -> int:
        """Start (or reuse) the proxy of link `name` towards host:port; its local port."""
        if name in self.links:
            return self.links[name].port
        link = Link(name, (host, port), resp=resp, seed=zlib.crc32(f"{self.seed}/{name}".encode()))
        self.links[name] = link
        return int(self._call(link.start))

    def set(self, name: str, **changes: Any) -> None:
        """Change link `name`'s faults (keyword arguments of `LinkFaults`)."""
        link = self.links[name]
        self._call(lambda: link.set(replace(link.faults, **changes)))

    def heal(self, name: str, *fields: str) -> None:
        """Reset the named fault fields of a link (all of them when none are named)."""
        clean = LinkFaults()
        names = fields or tuple(LinkFaults.__dataclass_fields__)
        self.set(name, **{f: getattr(clean, f) for f in names})

    def counters(self) -> dict[str, dict[str, int]]:
        return {name: link.counters.to_dict() for name, link in self.links.items()}

    def close(self) -> None:
        """Stop every link and the loop thread; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        for link in self.links.values():
            with contextlib.suppress(Exception):
                self._call(link.close)

        async def cancel_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self._call(cancel_rest)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._loop.close()
