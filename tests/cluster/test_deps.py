"""A Python without the project's dependencies stops with one line naming them (cluster.deps)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from cluster import deps
from cluster.ray_connect import node_problems_line

ROOT = Path(__file__).resolve().parents[2]


def versions(**installed: str) -> deps.VersionOf:
    return lambda name: installed.get(name.replace("-", "_"))


def test_missing_and_wrong_versions_are_named() -> None:
    found = deps.problems(
        ["torch==2.13.0", "pyarrow>=15,<27", "ray[default]>=2.40,<3", "numpy>=1.26"],
        versions(torch="2.5.0", ray="2.60.0", numpy="2.4.0"),
    )
    assert found == ["torch 2.5.0 (needs ==2.13.0)", "pyarrow"]


def test_local_versions_and_satisfied_requirements_pass() -> None:
    assert deps.problems(["torch==2.13.0"], versions(torch="2.13.0+cpu")) == []
    assert deps.problems([], versions()) == []


def test_requirements_come_from_pyproject() -> None:
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert deps.project_requirements(ROOT) == expected


def test_installed_distribution_is_the_fallback_without_pyproject(tmp_path: Path) -> None:
    """The image runs from an install: no pyproject.toml next to the code, the metadata instead."""
    found = deps.project_requirements(tmp_path)
    names = {re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in found}  # type: ignore[union-attr]
    assert {"torch", "ray", "pyarrow"} <= names
    assert "pytest" not in names, "the dev extra is not needed to run"


def test_this_virtualenv_has_everything() -> None:
    assert deps.problems(deps.project_requirements()) == []


@pytest.mark.parametrize(
    "command",
    [
        ["experiments/coherency.py", "--scale", "ci"],
        ["-m", "experiments.coherency", "--scale", "ci"],
        ["-m", "cluster", "--scale", "ci"],
    ],
)
def test_a_python_without_site_packages_gets_one_line(command: list[str]) -> None:
    """`-S`: only the standard library, as in a job whose `python` is not the project's. The
    checkout is on PYTHONPATH, as `ray job submit --working-dir` puts it (scripts do not edit
    `sys.path`; installed, the project is importable anyway)."""
    done = subprocess.run(
        [sys.executable, "-S", *command],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == deps.EXIT_MISSING, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "lacks the project's dependencies" in lines[0]
    assert "pyarrow" in lines[0] and "ray" in lines[0]
    assert "Traceback" not in done.stderr


def test_cli_reports_ok_here() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cluster.deps"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stdout.startswith("ok:"), done.stderr


def test_node_problems_line_names_only_the_bad_nodes() -> None:
    assert node_problems_line({"10.0.0.1 (ab)": [], "10.0.0.2 (cd)": []}) is None
    line = node_problems_line({"10.0.0.1 (ab)": [], "10.0.0.2 (cd)": ["pyarrow", "asyncpg"]})
    assert line is not None and "\n" not in line
    assert "node 10.0.0.2 (cd): pyarrow, asyncpg" in line
    assert "10.0.0.1" not in line
