"""One simulated multi-node Ray cluster for the tests of this folder, shaped like the cloud
(configs/ray-cluster.yaml): a CPU-less head, instance nodes labelled `tmws_instance`, swarm nodes
labelled `tmws_swarm`.

test_cloud_preset places the cloud preset on it by label; test_cluster_run runs the ci preset on
it (three instances on three distinct nodes, unlabelled bundles). Starting a cluster costs ~10-20 s
on two cores, so they share one; it lives in this sub-package so that it is shut down (and every
process it started checked gone) before the other tests of tests/cluster start Ray of their own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import ray
from ray.cluster_utils import Cluster

from cluster.run import child_processes, leaked_processes
from cluster.topology import load_preset

INSTANCE_NODES = 3
SWARM_NODES = 2
#: CPU share of each swarm on the swarm nodes (the cloud's 1 CPU would not fit two real cores).
SWARM_CPUS = 0.5


@dataclass(frozen=True)
class MultiNode:
    """The running cluster and how many cloud swarms each swarm node takes."""

    cluster: Cluster
    swarms_per_node: int

    @property
    def address(self) -> str:
        return str(self.cluster.address)


@pytest.fixture(scope="package")
def multi_node() -> Iterator[MultiNode]:
    """Head (0 CPU) + 3 instance nodes (1 CPU each) + 2 swarm nodes, on loopback."""
    cloud = load_preset("cloud")
    swarms_per_node = -(-cloud.swarms // SWARM_NODES)
    before = child_processes()
    started = time.monotonic()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(INSTANCE_NODES):
            cluster.add_node(num_cpus=1, resources=dict(cloud.instance_resources))
        for _ in range(SWARM_NODES):
            labels = {k: v * swarms_per_node for k, v in cloud.swarm_resources.items()}
            cluster.add_node(num_cpus=swarms_per_node * SWARM_CPUS, resources=labels)
        cluster.wait_for_nodes()
        nodes = 1 + INSTANCE_NODES + SWARM_NODES
        print(f"\n{nodes}-node cluster up in {time.monotonic() - started:.1f}s")
        yield MultiNode(cluster, swarms_per_node)
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()
        leaked = leaked_processes(before)
        assert not leaked, f"processes left behind: {[(p.pid, p.name()) for p in leaked]}"
