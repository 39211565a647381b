"""Plan 4.2 at ci scale: Redis stopped and paused mid-load (servers given by URL, faults through
the user's own commands), and the same run without any fault driver."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import pytest

from experiments.redis_failover import EXPERIMENT, OUTAGE_CRITERIA
from tests.conftest import ExternalInfra

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "embedded_fault.py"


def fault_commands(infra: Any) -> list[str]:
    """--fault-*-cmd options that stop/start (the script) and pause/resume (signals) the
    embedded Redis by its recorded pid, as a user with their own servers would."""
    script = f"{shlex.quote(sys.executable)} {shlex.quote(str(SCRIPT))}"
    state = shlex.quote(str(infra.state_dir))
    pid = f"$(cat {shlex.quote(str(infra.redis.pid_file))})"
    return [
        "--fault-stop-cmd", f"{script} stop {{target}} --state-dir {state}",
        "--fault-start-cmd", f"{script} start {{target}} --state-dir {state}",
        "--fault-pause-cmd", f"kill -STOP {pid}",
        "--fault-resume-cmd", f"kill -CONT {pid}",
    ]  # fmt: skip


@pytest.mark.slow
def test_redis_failover_ci_stop_and_pause_through_user_commands(
    private_infra: Any, run_ci: Any
) -> None:
    given = ExternalInfra(private_infra.database_url, private_infra.redis_url)
    run = run_ci(EXPERIMENT, given, *fault_commands(private_infra))
    for kind in ("stop", "pause"):
        run.passed(*(f"{name}_{kind}" for name in OUTAGE_CRITERIA))
        print(kind, {k: run.metrics[kind][k] for k in ("outage_s", "reconnect_s", "writes")})
    run.passed("no_stale_reads", "recovery_not_degraded", "l2_hits_after_reconnect")
    assert [f["driver"] for f in run.metrics["faults"]] == ["commands", "commands"]
    assert run.code == 0


@pytest.mark.slow
def test_without_a_fault_driver_the_outage_is_skipped_and_the_run_fails(
    infra: Any, run_ci: Any
) -> None:
    given = ExternalInfra(infra.database_url, infra.redis_url)
    run = run_ci(EXPERIMENT, given, "--fault-mode", "stop")
    skipped = run.criteria["success_during_outage_stop"]
    assert skipped["skipped"] and "no fault driver" in skipped["measured"]
    assert run.code != 0
