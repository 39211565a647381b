"""[6.2] The 8 s test pattern against its 5 s budget at ci scale: -32001, no leaks."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import run_experiment
from experiments.timeout import EXPERIMENT, Release, TimeoutFacts


@pytest.mark.slow
@pytest.mark.usefixtures("shared_ray")
def test_timeout_ci(infra: Any, tmp_path: Path) -> None:
    code, out = run_experiment(
        EXPERIMENT, ["--scale", "ci", "--out", str(tmp_path), "--quiet"], infra=infra
    )
    metrics = json.loads((out / "metrics.json").read_text())
    verdicts = {c["name"]: c for c in metrics["criteria"]}
    for name in (
        "timeout_detected_and_enforced",
        "client_receives_timeout_error",
        "no_resource_leaks",
        "other_requests_unaffected",
    ):
        assert verdicts[name]["passed"], verdicts[name]
    assert verdicts["timeout_latency_max"]["measured"] is not None  # reported, gating off ci
    assert code == 0


def _slow_rows(rows: Any) -> Any:
    r = rows()
    for i in range(3):
        r.add(op="read", method="execute_pattern", phase="slow", send=0, recv=5050 + i,
              success=False, error_code=-32001, error_reason="timeout")  # fmt: skip
    for i in range(20):
        r.add(op="other", method="ping", phase="other-requests", send=100 + i * 100,
              recv=101 + i * 100)  # fmt: skip
    return r.table()


def _facts(released: bool, left_s: float) -> TimeoutFacts:
    in_use = [1, 1, 1] if not released else [0, 0, 0]
    return TimeoutFacts(
        slow_sent=3,
        t_slow_start_ns=0,
        t_slow_end_ns=6_000_000_000,
        release=Release(
            pg_sleep_at_reply=3 if not released else 0,
            pool_in_use_at_reply=in_use,
            pg_sleep_last=3 if not released else 0,
            pool_in_use_last=in_use,
            leak_check_looks=4,
            leak_check_s=1.8,
            sleep_left_at_check_s=left_s,
            released=released,
            released_before_natural_end_s=left_s - 0.05,
        ),
    )


@pytest.mark.parametrize(
    ("released", "left_s", "verdict"),
    [
        (True, 2.9, "pass"),
        (False, 2.9, "fail"),  # the uncancelled pg_sleep still ran right after the timeouts
        (True, 0.4, "insufficient"),  # checked too late: the sleep could have ended by itself
    ],
)
def test_no_resource_leaks_is_checked_before_the_sleep_could_end(
    rows: Any, released: bool, left_s: float, verdict: str
) -> None:
    from tests.experiments.offline import judge

    found, _ = judge(EXPERIMENT, _slow_rows(rows), _facts(released, left_s))
    crit = found["no_resource_leaks"]
    assert {"insufficient": crit.insufficient, "pass": crit.passed, "fail": crit.failed}[verdict]
