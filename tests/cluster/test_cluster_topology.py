"""Scale presets, topology and the placement plan (pure)."""

from __future__ import annotations

from collections import Counter

import pytest

from cluster.topology import (
    PRESETS,
    ScalePreset,
    assign_instances,
    build_topology,
    load_preset,
    plan_placement,
)


@pytest.mark.parametrize("name", PRESETS)
def test_presets_load(name: str) -> None:
    preset = load_preset(name)
    assert preset.name == name and preset.instances >= 3 and preset.total_agents >= 300


def test_unknown_preset_key_is_named() -> None:
    with pytest.raises(ValueError, match="instancez"):
        ScalePreset.from_dict({"name": "x", "instancez": 3})
    with pytest.raises(ValueError, match="swarms"):
        ScalePreset(name="x", swarms=0)
    with pytest.raises(FileNotFoundError):
        load_preset("nope")


def test_round_robin_assignment_spreads_agents_evenly() -> None:
    topo = build_topology(ScalePreset("t", instances=3, swarms=3, agents_per_swarm=100), "run1")
    assert topo.agent_count == 300 and len(topo.instance_ids) == 3
    homes = Counter(h for s in topo.swarms for h in s.home_instances)
    assert homes == {0: 100, 1: 100, 2: 100}
    ids = [a for s in topo.swarms for a in s.agent_ids]
    assert len(set(ids)) == 300 and all(a.startswith("run1-") for a in ids)


def test_by_swarm_assignment() -> None:
    assert assign_instances(4, 3, 1, "by_swarm") == [1, 1, 1, 1]
    assert assign_instances(4, 3, 2, "round_robin") == [2, 0, 1, 2]


def test_placement_spreads_strictly_with_enough_nodes() -> None:
    preset = ScalePreset("t", instances=3, swarms=3, instance_cpus=0.5, swarm_cpus=0.25)
    plan = plan_placement(preset, alive_nodes=3)
    assert plan.instance_strategy == "STRICT_SPREAD" and plan.swarm_strategy == "SPREAD"
    assert plan.instance_bundles == ({"CPU": 0.5},) * 3
    assert plan.swarm_bundles == ({"CPU": 0.25},) * 3
    assert not plan.single_node


def test_placement_falls_back() -> None:
    preset = ScalePreset("t", instances=3, swarms=3)
    assert plan_placement(preset, alive_nodes=2).instance_strategy == "SPREAD"
    single = plan_placement(preset, alive_nodes=1)
    assert single.single_node and single.swarm_strategy == "PACK" and "PACK" in single.reason
    with pytest.raises(ValueError):
        plan_placement(preset, alive_nodes=0)


def test_zero_cpu_bundles_are_still_valid() -> None:
    plan = plan_placement(ScalePreset("t", instance_cpus=0, swarm_cpus=0), alive_nodes=3)
    assert all(b["CPU"] > 0 for b in plan.instance_bundles + plan.swarm_bundles)
