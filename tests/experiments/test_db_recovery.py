"""[6.1] PostgreSQL stopped and paused under load at ci scale (the embedded driver, private
servers)."""

from __future__ import annotations

from typing import Any

import pytest

from experiments.db_recovery import EXPERIMENT, OUTAGE_CRITERIA


@pytest.mark.slow
def test_db_recovery_ci_stop_and_pause(private_infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, private_infra)
    for kind in ("stop", "pause"):
        run.passed(*(f"{name}_{kind}" for name in OUTAGE_CRITERIA))
        numbers = run.metrics[kind]
        print(kind, {k: numbers[k] for k in ("outage_s", "recovery_s", "longest_db_answer_ms")})
    run.passed("no_internal_errors", "instances_not_restarted")
    assert [(f["driver"], f["kind"]) for f in run.metrics["faults"]] == [
        ("embedded", "stop"),
        ("embedded", "pause"),
    ]
    assert run.code == 0
