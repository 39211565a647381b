"""[2.3] Ten sockets of one agent on every instance at ci scale: isolation and the connection limit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.multi_client import EXPERIMENT
from experiments.runner import run_experiment


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_multi_client_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        "all_clients_receive_responses",
        "client_success_rate",
        "no_message_crosstalk",
        "session_isolation",
        "connection_limit_enforced",
        "slot_freed_after_close",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    assert verdicts["all_clients_receive_responses"]["measured"] == 30  # 10 on each of 3 instances
    assert code == 0
