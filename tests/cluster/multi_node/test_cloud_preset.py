"""The cloud preset on a simulated multi-node cluster: nodes labelled like configs/ray-cluster.yaml
(a CPU-less head, instance nodes with `tmws_instance: 1`, swarm nodes with `tmws_swarm`), the
preset's own labels and counts of instances and swarms, reduced agents and CPU shares.

Checks the placement the cloud needs: each instance on a node of its own, and only on instance
nodes; swarms only on swarm nodes and spread over them; nothing on the head; rows from every
instance; nothing left running on the cluster (every process it started is checked gone when
the shared cluster of conftest.py shuts down).
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pytest
import ray

from cluster.run import ClusterRun, RunConfig
from cluster.topology import load_preset
from tests.cluster.multi_node.conftest import INSTANCE_NODES, SWARM_CPUS, SWARM_NODES, MultiNode

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

AGENTS_PER_SWARM = 10


def test_cloud_preset_places_instances_and_swarms_by_label(
    infra: Any, tmp_path: Path, multi_node: MultiNode
) -> None:
    cloud = load_preset("cloud")
    swarms_per_node = multi_node.swarms_per_node
    # The cloud's labels and counts; CPU shares and agents cut to fit two real cores.
    preset = dataclasses.replace(
        cloud,
        name="cloud-simulated",
        agents_per_swarm=AGENTS_PER_SWARM,
        instance_cpus=1,
        swarm_cpus=SWARM_CPUS,
        instance_env={"TMWS_POOL_MIN": "2", "TMWS_POOL_MAX": "5"},
        warmup_workload={"mix": {"ping": 1}, "requests_per_agent": 1},
        workload={"mix": {"ping": 1, "get_agent_info": 1}, "requests_per_agent": 2},
    )
    started = time.monotonic()
    config = RunConfig(
        scenario="cloud-simulated",
        preset=preset,
        out_dir=tmp_path,
        address=multi_node.address,
        infra=infra,
        progress=False,
    )
    try:
        with ClusterRun(config) as run:
            resources = {n["NodeID"]: n["Resources"] for n in ray.nodes() if n["Alive"]}
            instance_nodes = [i.node_id for i in run.instance_infos]
            swarm_nodes = ray.get([s.node_id.remote() for s in run.swarms], timeout=60)
            assert run.placement is not None
            strategy = run.placement.plan.instance_strategy
            run.phase("warm-up", preset.warmup_workload)
            run.phase("load", preset.workload)
            table = run.gather().table
        print(f"\nbring-up, two phases, teardown: {time.monotonic() - started:.0f}s")
    finally:
        if ray.is_initialized():
            ray.shutdown()
    assert run.instances == [] and run.swarms == []  # its actors killed at teardown
    assert len(resources) == 1 + INSTANCE_NODES + SWARM_NODES

    assert strategy == "STRICT_SPREAD"
    assert len(set(instance_nodes)) == cloud.instances, "one instance per node"
    assert all("tmws_instance" in resources[n] for n in instance_nodes)
    assert len(swarm_nodes) == cloud.swarms
    assert all("tmws_swarm" in resources[n] for n in swarm_nodes), "swarms only on swarm nodes"
    assert set(Counter(swarm_nodes).values()) == {swarms_per_node}, Counter(swarm_nodes)
    head = next(n for n, r in resources.items() if r.get("CPU", 0) == 0)
    assert head not in instance_nodes + swarm_nodes, "nothing on the CPU-less head"

    load = table.filter(pc.equal(table["phase"], "load"))
    assert load.num_rows == cloud.swarms * AGENTS_PER_SWARM * 2
    assert pc.all(load["success"]).as_py()
    assert set(load["node_id"].to_pylist()) == set(instance_nodes), "rows from every instance"
