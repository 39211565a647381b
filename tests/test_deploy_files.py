"""docker-compose.yml and the Dockerfile stay in step with the settings the service reads."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from service.config import Settings

ROOT = Path(__file__).resolve().parents[1]


def settings_variables() -> set[str]:
    source = (ROOT / "service" / "config.py").read_text()
    return set(re.findall(r'"(TMWS_[A-Z0-9_]+)"', source))


def test_compose_has_the_pair_and_three_instances_on_loopback() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "tmws-1", "tmws-2", "tmws-3"} <= set(services)
    assert "pgvector" in services["postgres"]["image"]
    for name, spec in services.items():
        for port in spec.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), (name, port)


def test_compose_sets_only_variables_the_service_reads() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    known = settings_variables()
    ids = set()
    for name in ("tmws-1", "tmws-2", "tmws-3"):
        env = compose["services"][name]["environment"]
        assert set(env) <= known, set(env) - known
        assert env["TMWS_AUTH_SECRET"], "instances on a shared network must not run open"
        ids.add(env["TMWS_INSTANCE_ID"])
        # The values themselves must parse (secret placeholders aside).
        Settings.from_env({k: str(v) for k, v in env.items() if not str(v).startswith("${")})
    assert len(ids) == 3


def test_dockerfile_pins_torch_and_serves_the_cli() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "torch==2.13.0" in dockerfile
    assert '"tmws", "serve"' in dockerfile
