"""The per-node dependency probe on a real local Ray: passes here, names what a node lacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import ray

from cluster.ray_connect import MissingDependencies, check_cluster_dependencies
from cluster.run import child_processes, leaked_processes

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    before = child_processes()
    ray.init(address="local", num_cpus=1, include_dashboard=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()
        leaked = leaked_processes(before)
        assert not leaked, [(p.pid, p.name()) for p in leaked]


def test_every_node_has_the_project_dependencies(local_ray: None) -> None:
    check_cluster_dependencies()


def test_a_missing_requirement_is_named_with_its_node(local_ray: None) -> None:
    """Negative control: the workers are asked for a distribution nobody has."""
    with pytest.raises(MissingDependencies) as caught:
        check_cluster_dependencies(["tmws-no-such-dist>=1", "pyarrow>=15"])
    message = str(caught.value)
    assert "\n" not in message
    assert "tmws-no-such-dist" in message and "pyarrow" not in message
    node = ray.nodes()[0]
    assert node["NodeManagerAddress"] in message
