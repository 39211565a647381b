"""The fault proxy against a real Redis: clean pass-through, latency, partition (blackhole),
reset, bandwidth, and dropped / delayed pub/sub deliveries on a subscriber connection only."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from cluster.nemesis.proxy import ProxyHub
from cluster.nemesis.resp import FrameCutter, pubsub_kind
from service.infra.servers import RedisServer, free_port


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def hub() -> Iterator[ProxyHub]:
    hub = ProxyHub(seed=1)
    try:
        yield hub
    finally:
        hub.close()


def _client(port: int, timeout: float = 5.0) -> redis.Redis:
    # No retries: a timeout must surface once, not after redis-py's backoff rounds.
    return redis.Redis(
        host="127.0.0.1",
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )


def _link(hub: ProxyHub, server: RedisServer) -> int:
    return hub.link("inst-0/redis", "127.0.0.1", server.port, resp=True)


def test_frame_cutter_splits_and_joins() -> None:
    stream = b"+OK\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n:12\r\n$-1\r\n"
    cutter = FrameCutter()
    frames = [f for i in range(len(stream)) for f in cutter.feed(stream[i : i + 1])]
    assert b"".join(frames) == stream and len(frames) == 4
    assert [pubsub_kind(f) for f in frames] == [None, b"message", None, None]
    # a reply that happens to be the array ["message", ...] on a normal connection is not judged
    # here: the proxy only filters connections that sent SUBSCRIBE.


def test_pass_through_and_latency(hub: ProxyHub, redis_server: RedisServer) -> None:
    client = _client(_link(hub, redis_server))
    assert client.set("k", "v") and client.get("k") == b"v"
    hub.set("inst-0/redis", latency_ms=150, jitter_ms=20)
    started = time.monotonic()
    client.get("k")
    took = time.monotonic() - started
    assert took >= 0.26  # both directions: >= 2 x (150 - 20) ms
    hub.heal("inst-0/redis")
    started = time.monotonic()
    client.get("k")
    assert time.monotonic() - started < 0.25
    client.close()


def test_partition_holds_connections_open_and_answers_nothing(
    hub: ProxyHub, redis_server: RedisServer
) -> None:
    port = _link(hub, redis_server)
    client = _client(port, timeout=0.5)
    client.ping()
    hub.set("inst-0/redis", partition=True)
    with pytest.raises(redis.exceptions.TimeoutError):
        client.ping()
    with pytest.raises(redis.exceptions.TimeoutError):
        _client(port, timeout=0.5).ping()  # a new connection is accepted, then nothing
    hub.heal("inst-0/redis")
    assert _client(port).ping()


def test_reset_breaks_open_connections_and_refuses_new(
    hub: ProxyHub, redis_server: RedisServer
) -> None:
    port = _link(hub, redis_server)
    client = _client(port, timeout=2)
    client.ping()
    hub.set("inst-0/redis", reset=True)
    raw = redis.Connection(host="127.0.0.1", port=port, socket_timeout=2)
    with pytest.raises(redis.exceptions.ConnectionError):
        raw.connect()
        raw.send_command("PING")
        raw.read_response()
    assert hub.counters()["inst-0/redis"]["resets"] >= 2
    hub.heal("inst-0/redis")
    assert client.ping()  # redis-py reconnects once the link is healed


def test_bandwidth_limit_slows_large_replies(hub: ProxyHub, redis_server: RedisServer) -> None:
    client = _client(_link(hub, redis_server), timeout=10)
    client.set("big", b"x" * 40_000)
    hub.set("inst-0/redis", bytes_per_s=100_000)
    started = time.monotonic()
    assert len(client.get("big") or b"") == 40_000
    assert time.monotonic() - started >= 0.3  # 40 kB at 100 kB/s
    hub.heal("inst-0/redis")


def _deliveries(pubsub: redis.client.PubSub, want: int, bound_s: float) -> list[bytes]:
    got: list[bytes] = []
    deadline = time.monotonic() + bound_s
    while len(got) < want and time.monotonic() < deadline:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "message":
            got.append(message["data"])
    return got


def test_pubsub_drop_and_delay_touch_only_deliveries(
    hub: ProxyHub, redis_server: RedisServer
) -> None:
    port = _link(hub, redis_server)
    subscriber = _client(port).pubsub()
    subscriber.subscribe("tmws:invalidate")
    assert _deliveries(subscriber, 0, 0.3) == []
    direct = _client(redis_server.port)
    ordinary = _client(port)
    hub.set("inst-0/redis", drop_fraction=1.0)
    for i in range(5):
        direct.publish("tmws:invalidate", f"m{i}")
        assert ordinary.get("missing") is None  # other connections of the link are untouched
    assert _deliveries(subscriber, 1, 0.5) == []
    hub.heal("inst-0/redis")
    direct.publish("tmws:invalidate", "after")
    assert _deliveries(subscriber, 1, 5) == [b"after"]
    hub.set("inst-0/redis", delay_ms=600, delay_fraction=1.0)
    sent = time.monotonic()
    direct.publish("tmws:invalidate", "late")
    assert _deliveries(subscriber, 1, 5) == [b"late"]
    assert time.monotonic() - sent >= 0.55
    counters = hub.counters()["inst-0/redis"]
    assert counters["pubsub_dropped"] == 5 and counters["pubsub_delayed"] == 1
    subscriber.close()
