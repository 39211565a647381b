"""docs/capacity.md's measured section is what docs/capacity.json says, and the cloud configs
have room for what the measured model plans for 3 instances."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cluster.capacity_report import (
    LIGHT,
    cloud_scenarios,
    inputs_from,
    measured_section,
    render,
    write_doc,
)
from cluster.topology import PROJECT_ROOT, load_preset

DOC = PROJECT_ROOT / "docs" / "capacity.md"


def measured() -> dict[str, Any]:
    return dict(json.loads((PROJECT_ROOT / "docs" / "capacity.json").read_text()))


def test_the_doc_shows_the_committed_measurements() -> None:
    assert measured_section(DOC) == render(measured()), (
        "docs/capacity.md is stale: run `scripts/measure_capacity.py doc`"
    )


def test_a_changed_measurement_changes_the_doc() -> None:
    """Negative control: the comparison above sees a single changed number."""
    data = copy.deepcopy(measured())
    data["classes"]["store_memory"]["loop"] *= 2
    assert render(data) != measured_section(DOC)


def test_every_class_was_measured_in_both_regimes_with_answers() -> None:
    data = measured()
    saturated, light = inputs_from(data), inputs_from(data, LIGHT)
    assert set(saturated.costs) == set(light.costs)
    assert {"ping", "store_memory", "recall_memory", "execute_pattern/llm"} <= set(saturated.costs)
    for name, m in data["classes"].items():
        if not name.startswith("_"):
            assert m["requests"] > 0 and m["errors"] == 0, name
            assert m["seen"].get(name, 0) / m["requests"] >= 0.8, f"{name}: mostly another class"


def test_write_doc_needs_the_markers(tmp_path: Path) -> None:
    target = tmp_path / "capacity.md"
    target.write_text("# no markers\n")
    with pytest.raises(ValueError, match="no <!-- measured:begin -->"):
        write_doc(measured(), target)


def test_cloud_configs_have_room_for_the_planned_three_instances() -> None:
    """The preset and its clusters are sized by the committed model (re-measuring may ask to
    resize them: that is the point)."""
    from tests.deploy import facts

    preset = load_preset("cloud")
    three = next(s for s in cloud_scenarios(measured()) if s.load.instances == preset.instances)
    plan = three.plan
    assert preset.instances == 3 and preset.total_agents == 1000
    assert preset.instance_cpus >= plan.instance_cores
    assert int(preset.instance_env["TMWS_POOL_MAX"]) * preset.instances == plan.postgres_connections
    full = next(s for s in cloud_scenarios(measured()) if s.load.rate == 1000)
    assert preset.swarms * preset.swarm_cpus >= full.plan.swarm_cores / 0.7
    launcher = facts.load_yaml("configs/ray-cluster.yaml")["available_node_types"]
    node = next(t for t in launcher.values() if "tmws_instance" in t["resources"])
    assert node["resources"]["CPU"] >= plan.instance_node_vcpus
    threads = [
        option.split("=")[1]
        for option in node["docker"]["worker_run_options"]
        if "TMWS_TORCH_THREADS" in option
    ]
    assert threads == [str(plan.torch_threads)]
    cluster = facts.load_yaml("deploy/kuberay/raycluster.yaml")["spec"]["workerGroupSpecs"]
    group = next(g for g in cluster if "tmws_instance" in g["rayStartParams"].get("resources", ""))
    container = group["template"]["spec"]["containers"][0]
    assert float(container["resources"]["requests"]["cpu"]) >= plan.instance_node_vcpus
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    assert env.get("TMWS_TORCH_THREADS") == str(plan.torch_threads)
