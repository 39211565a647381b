"""The laptop path: the same `ClusterRun` on a single-node local Ray that it starts itself."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
import ray

from cluster.run import ClusterRun, RunConfig, child_processes, leaked_processes
from cluster.topology import ScalePreset, load_preset

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def test_single_node_local_ray_runs_and_cleans_up(infra: Any, tmp_path: Path) -> None:
    assert not ray.is_initialized()
    ci = load_preset("ci")
    preset = ScalePreset.from_dict(
        {
            "name": "local",
            "instances": 3,
            "swarms": 2,
            "agents_per_swarm": 30,
            "instance_cpus": ci.instance_cpus,
            "swarm_cpus": ci.swarm_cpus,
            "local_num_cpus": ci.local_num_cpus,
            "instance_env": dict(ci.instance_env),
            "workload": dict(ci.workload),
        }
    )
    before = child_processes()
    started = time.monotonic()
    with ClusterRun(
        RunConfig(scenario="local", preset=preset, out_dir=tmp_path, infra=infra, progress=False)
    ) as run:
        bring_up = time.monotonic() - started
        assert run.ray is not None and run.ray.started_local
        assert run.placement is not None and run.placement.plan.single_node
        assert len({i.node_id for i in run.instance_infos}) == 1
        assert sum(run.sessions.values()) == 60
        reports = run.phase("load")
        # ray.util.metrics rode along: every request published by its swarm, and every
        # instance's /metrics mirrored into Ray gauges when its stats were sampled.
        assert sum(s["metrics_published"] for s in run.status()) == 60 * 3
        assert all(s["ray_metrics_set"] > 20 for s in run.instance_stats())
        result = run.gather()
    print(f"\nlocal single-node bring-up {bring_up:.1f}s; rows {result.table.num_rows}")
    assert sum(r.sent for r in reports) == 60 * 3 == result.table.num_rows
    assert pc.all(result.table["success"]).as_py()
    assert len(set(result.table["instance_id"].to_pylist())) == 3
    assert (tmp_path / "history.parquet").exists()
    assert not ray.is_initialized()
    leaked = leaked_processes(before)
    assert not leaked, [(p.pid, p.name()) for p in leaked]
