"""The official MCP conformance suite against /mcp: the scenarios that apply to TMWS pass.

`@modelcontextprotocol/conformance` needs Node >= 22; `scripts/mcp_conformance.sh --install-only`
puts it (and a Node 22 from npm when the system one is older) under $TMWS_CONFORMANCE_DIR,
default ~/.cache/tmws/conformance. Without it these tests fail and say how to install it: a
check that did not run is not a pass.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from service.config import SecuritySettings

StartServer = Callable[..., Awaitable[Any]]
#: Scenarios that apply to a server with tools but no resources, prompts, logging or sampling
#: (the rest test a reference server's fixture tools: configs/conformance/expected-failures.yaml).
APPLICABLE = ("server-initialize", "ping", "tools-list", "dns-rebinding-protection")


def conformance_dir() -> Path:
    configured = os.environ.get("TMWS_CONFORMANCE_DIR")
    if configured:
        return Path(configured)
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "tmws" / "conformance"


def _major(node: str) -> int:
    try:
        out = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30)
        return int(out.stdout.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return 0


def suite_command() -> list[str]:
    """[node, conformance entry point], or a test failure saying how to install them."""
    base = conformance_dir()
    entry = base / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    system = shutil.which("node")
    node = system if system and _major(system) >= 22 else str(base / "node_modules/.bin/node")
    if not entry.is_file() or _major(node) < 22:
        pytest.fail(
            f"MCP conformance suite or Node >= 22 missing under {base}: run "
            "`scripts/mcp_conformance.sh --install-only` (CI's .ci/run does it)",
            pytrace=False,
        )
    return [node, str(entry)]


async def run_scenario(url: str, scenario: str, out: Path) -> tuple[int, list[dict[str, Any]]]:
    """(exit code, checks) of one scenario against `url`; the server keeps serving meanwhile."""
    proc = await asyncio.create_subprocess_exec(
        *suite_command(), "server", "--url", url, "--scenario", scenario, "-o", str(out),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    async with asyncio.timeout(120):
        output, _ = await proc.communicate()
    return proc.returncode or 0, _checks(out, scenario, output.decode(errors="replace"))


def _checks(out: Path, scenario: str, output: str) -> list[dict[str, Any]]:
    results = sorted(out.glob(f"server-{scenario}-*/checks.json"))
    assert results, output
    return json.loads(results[-1].read_text())


def test_a_missing_suite_fails_and_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("TMWS_CONFORMANCE_DIR", str(tmp_path))
    with pytest.raises(pytest.fail.Exception, match=r"scripts/mcp_conformance\.sh --install-only"):
        suite_command()


@pytest.mark.parametrize("scenario", APPLICABLE)
async def test_applicable_scenarios_pass(
    start_server: StartServer, scenario: str, tmp_path: Path
) -> None:
    server = await start_server()
    code, checks = await run_scenario(f"{server.http}/mcp", scenario, tmp_path)
    assert checks and all(c["status"] == "SUCCESS" for c in checks), checks
    assert code == 0
    if scenario == "dns-rebinding-protection":
        by_id = {c["id"]: c for c in checks}
        assert by_id["localhost-host-rebinding-rejected"]["details"]["statusCode"] == 403
        assert by_id["localhost-host-valid-accepted"]["details"]["statusCode"] == 200


async def test_dns_rebinding_scenario_fails_without_the_checks(
    start_server: StartServer, tmp_path: Path
) -> None:
    """Negative control: with every Origin and Host allowed the scenario must fail."""
    server = await start_server(
        security=SecuritySettings(allowed_origins=("*",), allowed_hosts=("*",))
    )
    code, checks = await run_scenario(f"{server.http}/mcp", "dns-rebinding-protection", tmp_path)
    by_id = {c["id"]: c["status"] for c in checks}
    assert by_id["localhost-host-rebinding-rejected"] == "FAILURE"
    assert by_id["localhost-host-valid-accepted"] == "SUCCESS"
    assert code != 0
