"""Every experiment starts both as a module and as a script, without editing `sys.path`.

The subprocesses get the checkout on PYTHONPATH, as `ray job submit --working-dir .` gives it
(the editable install does the same for a plain `python experiments/X.py`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p for p in (ROOT / "experiments").glob("*.py") if p.name != "__init__.py")


def _help(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, *args, "--help"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_no_script_edits_sys_path() -> None:
    editing = [p.name for p in SCRIPTS if "sys.path.insert" in p.read_text(encoding="utf-8")]
    assert SCRIPTS and editing == []


@pytest.mark.parametrize("how", ["module", "script"])
def test_an_experiment_starts_from_anywhere(how: str, tmp_path: Path) -> None:
    args = (
        ["-m", "experiments.timeout"]
        if how == "module"
        else [str(ROOT / "experiments" / "timeout.py")]
    )
    done = _help(args, ROOT if how == "module" else tmp_path)
    assert done.returncode == 0, done.stderr
    assert "--scale" in done.stdout
