"""Helpers for the experiment tests: run one experiment at ci scale and read its metrics.json."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from experiments.runner import Experiment, run_experiment
from tests.history_rows import Rows


@pytest.fixture
def rows() -> Callable[[], Rows]:
    """A factory of hand-built history tables (checks fed rows where they must fail)."""
    return Rows


@dataclass
class CiRun:
    """What one ci-scale run left behind: exit code, folder and the parsed metrics.json."""

    code: int
    out: Path
    document: dict[str, Any]

    @property
    def criteria(self) -> dict[str, dict[str, Any]]:
        """Criteria by name (the run's and the coherency checker's)."""
        return {c["name"]: c for c in self.document["criteria"]}

    @property
    def metrics(self) -> dict[str, Any]:
        return self.document["metrics"]

    def passed(self, *names: str) -> None:
        """Assert each named criterion was judged and passed (printing it on failure)."""
        for name in names:
            found = self.criteria[name]
            assert found["passed"] and not found["skipped"], found


RunCi = Callable[..., CiRun]


@pytest.fixture(scope="package")
def shared_ray() -> Iterator[None]:
    """One local Ray for every experiment test of this package: a run reuses it instead of
    starting and stopping its own (~10 s a run on 2 cores); every run still starts and stops its
    own actors and placement groups. Stopped after the package's last test, so later packages
    (and tests/cluster, which starts its own clusters) never see it."""
    import ray

    from cluster.ray_connect import connect
    from cluster.topology import load_preset

    if ray.is_initialized():
        yield
        return
    connection = connect(num_cpus=load_preset("ci").local_num_cpus)
    try:
        yield
    finally:
        connection.shutdown()


@pytest.fixture
def run_ci(tmp_path: Path, shared_ray: None) -> RunCi:
    """`run_ci(EXPERIMENT, infra, *extra_args)` → `CiRun` (prints the criteria for the log)."""

    def run(experiment: Experiment, infra: Any, *extra: str, out: Path | None = None) -> CiRun:
        folder = out or tmp_path / experiment.scenario
        argv: Sequence[str] = ["--scale", "ci", "--out", str(folder), "--quiet", *extra]
        code, path = run_experiment(experiment, argv, infra=infra)
        document = json.loads((path / "metrics.json").read_text())
        result = CiRun(code, path, document)
        print({k: (v["measured"], v["passed"]) for k, v in result.criteria.items()})
        return result

    return run
