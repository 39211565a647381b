"""`--nemesis` on every experiment: a bad schedule is a one-line usage error (exit 2) before
anything starts."""

from __future__ import annotations

import pytest

from experiments.coherency import EXPERIMENT
from experiments.runner import main


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ("flood:redis@1s+1s", "unknown fault kind 'flood'"),
        ("kill:inst-5@1s", "the run has 3 instances"),
        ("latency:inst-0/redis@1s+1s", "latency needs an argument"),
        ("configs/nemesis/missing.yaml", "no such nemesis file"),
    ],
)
def test_bad_schedules_are_usage_errors(
    schedule: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(EXPERIMENT, ["--scale", "ci", "--nemesis", schedule]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("coherency: error:") and message in err[0], err
