"""configs/ray-cluster.yaml: valid for the installed Ray's cluster launcher, runs the project's
image (no package list), token auth on, and node types that fit the cloud preset."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import ray

from cluster.topology import load_preset
from tests.deploy import facts

CONFIG = "configs/ray-cluster.yaml"


def launcher_schema() -> dict[str, Any]:
    path = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
    return dict(json.loads(path.read_text()))


def config() -> dict[str, Any]:
    return dict(facts.load_yaml(CONFIG))


def test_config_is_valid_for_the_cluster_launcher() -> None:
    jsonschema.validate(config(), launcher_schema())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda c: c["docker"].update(imagee="x"),
        lambda c: c["available_node_types"]["instance"].update(min_workers="3"),
        lambda c: c["available_node_types"]["swarm"].pop("resources"),
    ],
)
def test_the_launcher_schema_rejects_broken_configs(mutate: Any) -> None:
    """Negative controls: an unknown key, a wrong type, a missing required field."""
    broken = copy.deepcopy(config())
    mutate(broken)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, launcher_schema())


def test_nodes_run_the_project_image_and_install_nothing() -> None:
    cfg = config()
    assert cfg["docker"]["image"] == facts.image()
    assert not cfg.get("setup_commands") and not cfg.get("initialization_commands")
    text = (facts.ROOT / CONFIG).read_text()
    assert "pip install" not in text, "dependencies come from the image, not a list here"


def test_token_authentication_and_a_loopback_dashboard() -> None:
    cfg = config()
    assert "--env RAY_AUTH_MODE=token" in cfg["docker"]["run_options"]
    assert any("auth_token" in remote for remote in cfg["file_mounts"])
    head = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "0.0.0.0" not in head


def test_node_types_carry_the_cloud_labels_with_room_for_the_preset() -> None:
    preset = load_preset("cloud")
    types = config()["available_node_types"]
    assert types[config()["head_node_type"]]["resources"] == {"CPU": 0}, "no actors on the head"
    for labels, count, cpus in (
        (preset.instance_resources, preset.instances, preset.instance_cpus),
        (preset.swarm_resources, preset.swarms, preset.swarm_cpus),
    ):
        offering = [t for t in types.values() if set(labels) <= set(t["resources"])]
        assert len(offering) == 1, labels
        node = offering[0]
        per_node = min(int(node["resources"][k] // v) for k, v in labels.items())
        per_node = min(per_node, int(node["resources"]["CPU"] // cpus))
        assert per_node * node["max_workers"] >= count, (labels, per_node, count)
    instance = next(t for t in types.values() if "tmws_instance" in t["resources"])
    assert instance["resources"]["tmws_instance"] == 1, "one instance per node"
    assert instance["min_workers"] >= preset.instances
