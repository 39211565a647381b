"""[2.1] WebSocket MCP compliance at ci scale: the plan's criteria read back from metrics.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.mcp_compliance import ERROR_PROBES, EXPERIMENT
from experiments.runner import run_experiment


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_mcp_compliance_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    expected = [
        "jsonrpc_compliance",
        "request_response_id_matching",
        "plan_response_fields",
        "welcome_received",
        "session_isolation",
        "mcp_over_websocket",
        "mcp_streamable_http_sdk",
        "success_rate",
        *(f"error_{key}" for key, *_ in ERROR_PROBES),
    ]
    for name in expected:
        assert verdicts[name]["passed"], verdicts[name]
    assert code == 0
