"""Acceptance: a multi-node Ray cluster on one machine, 3 ServiceInstances on 3 nodes, 300 agents.

Uses the `ray.cluster_utils.Cluster` of conftest.py (loopback, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
from tests/conftest.py; five nodes with CPU, shared with test_cloud_preset) and the session's real
Redis + PostgreSQL. One run of the ci preset covers: placement on distinct nodes, one row per
request with nothing lost, killing an instance mid-run (agents move, failures are rows), and no
processes left behind (checked when the shared cluster shuts down).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
import ray

from actors.recorder import CLIENT_TIMEOUT, CONNECTION_LOST, NO_INSTANCE
from cluster.run import ClusterRun, RunConfig
from cluster.topology import load_preset
from tests.cluster.multi_node.conftest import MultiNode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def run(
    multi_node: MultiNode, infra: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ClusterRun]:
    config = RunConfig(
        scenario="cluster-acceptance",
        preset=load_preset("ci"),
        out_dir=tmp_path_factory.mktemp("cluster-run"),
        address=multi_node.address,
        infra=infra,
        progress=True,
    )
    started = time.monotonic()
    with ClusterRun(config) as cluster_run:
        print(
            f"bring-up (infra given, Ray connect, placement, 3 instances, 300 sessions): "
            f"{time.monotonic() - started:.1f}s; instance start-up "
            f"{[round(i.startup_s, 1) for i in cluster_run.instance_infos]}s"
        )
        yield cluster_run
    assert cluster_run.instances == [] and cluster_run.swarms == []


def test_instances_on_three_distinct_nodes(run: ClusterRun) -> None:
    nodes = {i.node_id for i in run.instance_infos}
    assert len(nodes) == 3, run.instance_infos
    assert {n["NodeID"] for n in ray.nodes() if n["Alive"]} >= nodes
    assert all(i.url.startswith("http://127.0.0.1:") for i in run.instance_infos)
    assert run.placement is not None and run.placement.plan.instance_strategy == "STRICT_SPREAD"
    assert sum(run.sessions.values()) == 300
    assert set(run.sessions) == {i.instance_id for i in run.instance_infos}
    stats = run.instance_stats()
    print("instance RSS MB:", [round(s["rss_bytes"] / 2**20) for s in stats])
    assert len(stats) == 3 and all(s["rss_bytes"] > 0 for s in stats)


def test_every_request_is_one_row(run: ClusterRun) -> None:
    started = time.monotonic()
    warm = run.phase("warm-up", run.preset.warmup_workload)
    load = run.phase("load", run.preset.workload)
    elapsed = time.monotonic() - started
    sent = sum(r.sent for r in warm + load)
    assert sent == 300 * (1 + 3)
    result = run.gather()
    table = result.table
    print(
        f"{sent} requests in {elapsed:.1f}s ({sent / elapsed:.0f} req/s incl. phase set-up); "
        f"latency {result.latency_summary()}"
    )
    assert table.num_rows == sent == result.sent
    assert pc.all(table["success"]).as_py()
    assert len(set(table["agent_id"].to_pylist())) == 300
    assert len(set(table["instance_id"].to_pylist())) == 3
    assert len(set(table["node_id"].to_pylist())) == 3
    assert table["session_id"].null_count == 0
    # Each agent's namespace is its own id.
    assert pc.all(pc.equal(table["namespace"], table["agent_id"])).as_py()
    assert result.history_path is not None
    assert pq.read_table(result.history_path).num_rows == table.num_rows
    assert result.histograms["all"].get_total_count() == sent
    if result.resources is not None:
        print(f"resource samples: {result.resources.num_rows}")


def test_open_loop_phase_follows_the_schedule(run: ClusterRun) -> None:
    workload = {
        "mix": {"execute_pattern": 3, "recall_memory": 1, "store_memory": 1, "ping": 1},
        "rate": {
            "start_rate": 50,
            "peak_rate": 150,
            "ramp_up_s": 1,
            "sustain_s": 2,
            "ramp_down_s": 1,
        },
        "request_timeout_s": 10,
    }
    reports = run.phase("open-loop", workload)
    sent = sum(r.sent for r in reports)
    assert abs(sent - 500) <= 3  # area under the profile (100 + 300 + 100), over three swarms
    result = run.gather()
    rows = result.table.filter(pc.equal(result.table["phase"], "open-loop"))
    assert rows.num_rows == sent
    sends = sorted(rows["t_send_ns"].to_pylist())
    span_s = (sends[-1] - sends[0]) / 1e9
    assert 3.5 < span_s < 4.0  # intended send times span the profile, whatever the latency
    by_method = {}
    for r in rows.to_pylist():
        ok, total = by_method.get(r["method"], (0, 0))
        by_method[r["method"]] = (ok + r["success"], total + 1)
    print(
        f"open loop: {sent} sends over {span_s:.2f}s; success by method {by_method}; "
        f"errors {failures(rows)}; latency {hdr_summary(rows)}"
    )
    assert {r["op"] for r in rows.to_pylist() if r["method"] == "store_memory"} == {"write"}


def failures(rows: Any) -> dict[tuple[str, int, str], int]:
    """Failed rows by (method, error code, reason)."""
    failed = [r for r in rows.to_pylist() if not r["success"]]
    return dict(Counter((r["method"], r["error_code"], r["error_reason"]) for r in failed))


def hdr_summary(rows: Any) -> dict[str, Any]:
    from analysis import hdr

    return hdr.summary_ms(hdr.from_ms(rows["latency_ms"].to_pylist()))


def test_killed_instance_agents_move_and_failures_are_rows(run: ClusterRun) -> None:
    victim = run.instance_infos[0]
    workload = {
        "mix": {"ping": 1, "get_agent_info": 1},
        "requests_per_agent": 12,
        "think_time_ms": [100, 200],
        "request_timeout_s": 5,
    }
    phase = run.start_phase("fault", workload)
    phase.wait_until_recorded(600, timeout_s=120)
    run.kill_instance(0)
    reports = phase.wait()
    sent = sum(r.sent for r in reports)
    assert sent == 300 * 12
    endpoints = run.refresh_endpoints()
    restarted = run.instance_infos[0]
    assert restarted.instance_id == victim.instance_id and restarted.url != victim.url
    assert restarted.restarts == 1
    print(
        f"restarted {victim.instance_id}: {victim.url} -> {restarted.url}; endpoints {len(endpoints)}"
    )

    result = run.gather()
    fault = result.table.filter(pc.equal(result.table["phase"], "fault"))
    assert fault.num_rows == sent
    rows = fault.to_pylist()
    failed = [r for r in rows if not r["success"]]
    print(
        f"fault phase: {len(failed)} failed of {len(rows)}; codes "
        f"{sorted({r['error_code'] for r in failed})}"
    )
    assert failed, "killing an instance mid-run must fail some requests"
    assert all(r["error_code"] in (CONNECTION_LOST, NO_INSTANCE, CLIENT_TIMEOUT) for r in failed)
    assert all(r["error_reason"] for r in failed)
    # Agents that lost their session finished on another instance.
    hit = {r["agent_id"] for r in failed}
    later = {}
    for r in sorted(rows, key=lambda r: r["t_send_ns"]):
        if r["agent_id"] in hit and r["success"]:
            later[r["agent_id"]] = r["instance_id"]
    moved = {a for a, inst in later.items() if inst != victim.instance_id}
    assert len(moved) >= len(hit) * 0.9, (len(moved), len(hit))
