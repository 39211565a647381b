"""Trim a KubeRay CRD to the schema the manifest tests validate against (run when KubeRay moves).

    git -C KUBERAY show v1.7.0:ray-operator/config/crd/bases/ray.io_rayclusters.yaml \\
        | .venv/bin/python scripts/trim_kuberay_crd.py > deploy/kuberay/schemas/raycluster-v1.json

Keeps the `v1` version's `openAPIV3Schema` only, without `description` fields (most of the
size); every type, property, enum, default and validation rule stays.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import yaml


def strip_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: strip_descriptions(v) for k, v in node.items() if k != "description"}
    if isinstance(node, list):
        return [strip_descriptions(v) for v in node]
    return node


def trim(crd: dict[str, Any], version: str = "v1") -> dict[str, Any]:
    """The named version's OpenAPI v3 schema, with the CRD's group and kind for reference."""
    for entry in crd["spec"]["versions"]:
        if entry["name"] == version:
            return {
                "x-source": {
                    "group": crd["spec"]["group"],
                    "kind": crd["spec"]["names"]["kind"],
                    "version": version,
                },
                **strip_descriptions(entry["schema"]["openAPIV3Schema"]),
            }
    raise SystemExit(f"trim_kuberay_crd: no version {version!r} in the CRD")


if __name__ == "__main__":
    json.dump(trim(yaml.safe_load(sys.stdin)), sys.stdout, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")
