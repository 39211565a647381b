"""Judge an experiment offline: its `check` on hand-built rows and facts, no servers started."""

from __future__ import annotations

from typing import Any

from analysis.checks import Criterion
from cluster.run import RunResult
from experiments.runner import Experiment, Outcome, build_parser


def judge(
    experiment: Experiment, table: Any, facts: Any, *argv: str, resources: Any = None
) -> tuple[dict[str, Criterion], Outcome]:
    """An experiment's `check` on hand-built rows and facts (no servers): criteria by name,
    the coherency checker's included, and the outcome."""
    args = build_parser(experiment).parse_args(["--scale", "ci", *argv])
    result = RunResult(table, {}, table.num_rows, resources=resources)
    outcome = experiment.check(result, facts, args)
    found = list(outcome.criteria) + (outcome.coherency.criteria if outcome.coherency else [])
    return {c.name: c for c in found}, outcome
