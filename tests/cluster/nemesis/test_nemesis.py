"""The nemesis applies and heals a schedule on time and records every fault (real Redis behind
the proxy; no Ray: the run object only needs `config.infra` and `infra`)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest
import redis

from cluster.nemesis.nemesis import FAULTS_SCHEMA, Nemesis, links_of
from cluster.nemesis.schedule import parse_schedule
from service.infra.servers import RedisServer, free_port


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_schedule_runs_on_time_and_every_fault_is_a_row(redis_server: RedisServer) -> None:
    schedule = parse_schedule(
        "latency:inst-0/redis=200ms±0ms@0.2s+0.6s, drop-invalidations:inst-0=1@0s+0.4s,"
        " clock:swarm-1=+250ms, pause:redis@0.1s+0.2s"
    )
    assert links_of(schedule) == {"inst-0/redis"}
    nemesis = Nemesis(schedule, seed=3)
    try:
        env = {
            "TMWS_REDIS_URL": redis_server.url,
            "TMWS_DATABASE_URL": "postgresql://u:p@127.0.0.1:5999/db",
        }
        routed = nemesis.route("run-x-inst-0", env)
        assert set(routed) == {"TMWS_REDIS_URL"}  # no fault on PostgreSQL: left direct
        assert (
            routed["TMWS_REDIS_URL"].endswith("/0")
            and str(redis_server.port) not in routed["TMWS_REDIS_URL"]
        )
        assert nemesis.route("run-x-inst-1", env) == {}
        assert nemesis.clock_skew_ns(1) == 250_000_000 and nemesis.clock_skew_ns(0) == 0
        client = redis.Redis.from_url(routed["TMWS_REDIS_URL"], socket_timeout=5)
        client.ping()
        nemesis.start(SimpleNamespace(config=SimpleNamespace(infra=None), infra=None))
        deadline = time.monotonic() + 10
        latency = next(r for r in nemesis.records if r.fault.kind == "latency")
        while latency.applied_ns is None and time.monotonic() < deadline:
            time.sleep(0.02)  # waiting on the nemesis thread, bounded
        started = time.monotonic()
        client.ping()
        assert time.monotonic() - started >= 0.35  # 200 ms each way while applied
        while latency.healed_ns is None and time.monotonic() < deadline:
            time.sleep(0.02)
        nemesis.stop()
    finally:
        nemesis.close()
    rows = {r["kind"]: r for r in nemesis.table().to_pylist()}
    assert nemesis.table().schema == FAULTS_SCHEMA
    for kind in ("latency", "drop-invalidations", "clock"):
        row = rows[kind]
        assert row["applied_ns"] and row["healed_ns"] and row["healed_ns"] >= row["applied_ns"]
        assert row["error"] is None, row
    lat = rows["latency"]
    assert 0.5 <= (lat["healed_ns"] - lat["applied_ns"]) / 1e9 < 3
    # Process faults need servers of our own: here none, so the fault is a recorded error.
    assert rows["pause"]["applied_ns"] is None and "given by URL" in rows["pause"]["error"]
