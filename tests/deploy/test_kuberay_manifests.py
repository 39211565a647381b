"""deploy/kuberay/: valid against KubeRay's CRD schemas, and in step with the image, Ray, the
settings, the cloud preset and the flagship's command line."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from cluster.topology import load_preset
from tests.deploy import facts
from tests.deploy.k8s_schema import problems

RAYCLUSTER = "deploy/kuberay/raycluster.yaml"
RAYJOB = "deploy/kuberay/rayjob.yaml"
SCHEMAS = {"RayCluster": "raycluster-v1.json", "RayJob": "rayjob-v1.json"}
#: Settings that are credentials: only ever from a Secret, never a literal in a manifest.
SECRET_SETTINGS = {"TMWS_DATABASE_URL", "TMWS_REDIS_URL", "TMWS_AUTH_SECRET"}


def schema(kind: str) -> dict[str, Any]:
    return dict(facts.load_json(f"deploy/kuberay/schemas/{SCHEMAS[kind]}"))


def cluster_spec(document: dict[str, Any]) -> dict[str, Any]:
    spec = document["spec"]
    return dict(spec["rayClusterSpec"] if document["kind"] == "RayJob" else spec)


def manifests() -> list[dict[str, Any]]:
    return [facts.load_yaml(RAYCLUSTER), facts.load_yaml(RAYJOB)]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def ray_resources(group: dict[str, Any]) -> dict[str, float]:
    """Custom resources a group's `ray start` offers (rayStartParams.resources is JSON, quoted)."""
    raw = group["rayStartParams"].get("resources")
    return json.loads(json.loads(raw)) if raw else {}


@pytest.mark.parametrize("path", [RAYCLUSTER, RAYJOB])
def test_manifest_is_valid_against_the_crd_schema(path: str) -> None:
    (document,) = facts.load_documents(path)
    assert document["apiVersion"] == "ray.io/v1"
    assert problems(document, schema(document["kind"])) == []


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["spec"].update(workerGroupSpec=[]),
            "spec.workerGroupSpec: field not declared",
        ),
        (lambda d: d["spec"]["workerGroupSpecs"][0].update(replicas="three"), "is not of type"),
        (lambda d: d["spec"]["authOptions"].update(mode="tokens"), "is not one of"),
        (lambda d: d["spec"]["workerGroupSpecs"][0].pop("groupName"), "'groupName' is a required"),
        (
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
                imagePullPolicy=["Always"]
            ),
            "is not of type",
        ),
        (
            lambda d: d["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].update(
                envv=[]
            ),
            "containers[0].envv: field not declared",
        ),
    ],
)
def test_the_schema_check_rejects_broken_manifests(mutate: Any, expected: str) -> None:
    """Negative controls: a typo, a wrong type, a bad enum, a missing field, a nested typo."""
    broken = copy.deepcopy(facts.load_yaml(RAYCLUSTER))
    mutate(broken)
    found = problems(broken, schema("RayCluster"))
    assert any(expected in p for p in found), found


def test_the_rayjob_runs_the_raycluster_spec() -> None:
    cluster, job = manifests()
    assert job["spec"]["rayClusterSpec"] == cluster["spec"]


@pytest.mark.parametrize("index", [0, 1])
def test_token_authentication_is_on_with_a_named_secret(index: int) -> None:
    spec = cluster_spec(manifests()[index])
    assert spec["authOptions"] == {"mode": "token", "secretName": "tmws-ray-token"}
    # Token auth needs Ray >= 2.52; the cluster runs the project's Ray.
    assert spec["rayVersion"] == facts.ray_version()
    assert tuple(int(p) for p in spec["rayVersion"].split(".")[:2]) >= (2, 52)


def test_every_container_runs_the_project_image() -> None:
    spec = cluster_spec(manifests()[0])
    assert {c["image"] for c in containers(spec)} == {facts.image()}


def test_settings_are_ones_the_service_reads_and_credentials_come_from_secrets() -> None:
    known = facts.service_variables()
    spec = cluster_spec(manifests()[0])
    head_env = {
        e["name"]: e for e in spec["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert SECRET_SETTINGS <= set(head_env), "the driver needs the managed stores and the secret"
    for container in containers(spec):
        for entry in container.get("env", []):
            if entry["name"].startswith("TMWS_"):
                assert entry["name"] in known, entry["name"]
            if entry["name"] in SECRET_SETTINGS:
                assert "value" not in entry and "secretKeyRef" in entry["valueFrom"], entry


def test_nothing_is_exposed_outside_the_cluster() -> None:
    spec = cluster_spec(manifests()[0])
    assert spec["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"
    assert not spec["headGroupSpec"].get("enableIngress", False)


def test_worker_groups_carry_the_cloud_presets_labels_with_room_for_it() -> None:
    preset = load_preset("cloud")
    spec = cluster_spec(manifests()[0])
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0", "no actors on the head"
    groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    for labels, count, cpus in (
        (preset.instance_resources, preset.instances, preset.instance_cpus),
        (preset.swarm_resources, preset.swarms, preset.swarm_cpus),
    ):
        offering = [g for g in groups.values() if set(labels) <= set(ray_resources(g))]
        assert len(offering) == 1, (labels, list(groups))
        group = offering[0]
        per_pod = min(int(ray_resources(group)[k] // v) for k, v in labels.items())
        node_cpus = float(group["rayStartParams"]["num-cpus"])
        per_pod = min(per_pod, int(node_cpus // cpus))
        assert per_pod * group["maxReplicas"] >= count, (group["groupName"], per_pod, count)
        assert group["minReplicas"] * per_pod >= count or labels is preset.swarm_resources
    instances = next(g for g in groups.values() if "tmws_instance" in ray_resources(g))
    assert ray_resources(instances)["tmws_instance"] == 1, "one instance per pod"


def test_ray_cpus_match_the_pods_cpu() -> None:
    """Ray schedules by logical CPUs: a pod offering more than it has would overcommit."""
    spec = cluster_spec(manifests()[0])
    for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
        container = group["template"]["spec"]["containers"][0]
        requested = float(container["resources"]["requests"]["cpu"])
        offered = float(group["rayStartParams"].get("num-cpus", requested))
        assert offered <= requested, group.get("groupName", "head")
        assert container["resources"]["limits"] == container["resources"]["requests"]


def test_the_rayjob_entrypoint_is_the_flagship_with_arguments_it_accepts() -> None:
    from experiments.coherency import EXPERIMENT
    from experiments.runner import build_parser

    job = manifests()[1]
    python, script, *args = shlex.split(job["spec"]["entrypoint"])
    assert python == "python"
    workdir = Path(_dockerfile_workdir())
    relative = Path(script).relative_to(workdir)
    assert relative == Path("experiments/coherency.py")
    assert (facts.ROOT / relative).exists()
    parsed = build_parser(EXPERIMENT).parse_args(args)
    assert parsed.scale == "cloud"
    assert parsed.out is not None and parsed.out.is_absolute()
    assert job["spec"]["shutdownAfterJobFinishes"] is True
    assert job["spec"]["backoffLimit"] == 0, "a verdict is never retried"


def _dockerfile_workdir() -> str:
    lines = (facts.ROOT / "Dockerfile").read_text().splitlines()
    return [line.split()[1] for line in lines if line.startswith("WORKDIR ")][-1]
