"""The cloud preset's node labels: custom resources in every bundle, refused where no node has them."""

from __future__ import annotations

import pytest

from cluster.topology import ScalePreset, load_preset, plan_placement


def test_cloud_bundles_ask_for_the_node_labels() -> None:
    preset = load_preset("cloud")
    plan = plan_placement(preset, alive_nodes=preset.instances)
    assert plan.instance_strategy == "STRICT_SPREAD"
    assert all(
        b == {"CPU": preset.instance_cpus, "tmws_instance": 1.0} for b in plan.instance_bundles
    )
    assert all(b == {"CPU": preset.swarm_cpus, "tmws_swarm": 1.0} for b in plan.swarm_bundles)
    assert len(plan.instance_bundles) == 3 and preset.total_agents == 1000


def test_laptop_presets_ask_for_no_labels() -> None:
    for name in ("ci", "laptop"):
        plan = plan_placement(load_preset(name), alive_nodes=1)
        assert all(set(b) == {"CPU"} for b in plan.instance_bundles + plan.swarm_bundles)


def test_no_labelled_node_is_a_one_line_error() -> None:
    with pytest.raises(
        ValueError, match=r"no alive Ray node offers CPU and \{'tmws_instance': 1.0\}"
    ):
        plan_placement(load_preset("cloud"), alive_nodes=0)


@pytest.mark.parametrize("resources", [{"CPU": 1}, {"tmws_instance": 0}, {"tmws_instance": -1}])
def test_labels_must_be_custom_resources_with_positive_amounts(resources: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="instance_resources takes custom resources"):
        ScalePreset.from_dict({"name": "x", "instance_resources": resources})
