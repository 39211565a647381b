"""The integration script refuses bad usage with one line and exit code 2, before running anything."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--suite=no_such_suite"], "no suite 'no_such_suite'"),
        (["--report=verbose"], "--report is summary or detailed"),
        (["--frobnicate"], "unknown option --frobnicate"),
        # --allow-skip is accepted (and usage is checked before the venv is touched).
        (["--allow-skip=redis_stopped,x", "--suite=nope"], "no suite 'nope'"),
        (["--allow-skip"], "--allow-skip needs a name"),
    ],
)
def test_bad_usage_exits_2(args: list[str], message: str) -> None:
    done = subprocess.run(
        ["bash", "scripts/run_integration_tests.sh", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 2, done.stderr
    assert message in done.stderr


def test_every_experiment_is_a_suite() -> None:
    scripts = {p.stem for p in (ROOT / "experiments").glob("*.py") if p.stem != "runner"}
    suites = {
        p.stem for p in (ROOT / "experiments").glob("*.py") if "\nEXPERIMENT = " in p.read_text()
    }
    # The plan's 18 scenarios (1.1-6.3) plus chaos (issue 14: the nemesis over the flagship).
    assert len(suites) == 19, sorted(suites)
    assert suites <= scripts
