"""Chaos at ci scale: the coherency workload under the schedule drawn from seed 7 (every fault
category), strict mode, and it passes; faults.parquet and timeline.html are written. The
injected-bug runs of chaos are in tests/experiments/test_negative_controls.py."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
import pytest

from cluster.nemesis.schedule import CATEGORIES
from experiments.chaos import EXPERIMENT
from experiments.runner import build_parser


def test_seed_7_draws_the_same_schedule_with_every_category() -> None:
    args = build_parser(EXPERIMENT).parse_args(["--scale", "ci", "--seed", "7"])
    first, again = EXPERIMENT.nemesis_schedule(args), EXPERIMENT.nemesis_schedule(args)
    assert first.text() == again.text() and first.categories() == set(CATEGORIES)


@pytest.mark.slow
def test_chaos_ci_seed_7_passes_strict(private_infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, private_infra, "--seed", "7")
    faults = pq.read_table(run.out / "faults.parquet").to_pylist()
    applied = {f["category"] for f in faults if f["applied_ns"] and f["healed_ns"]}
    assert applied == set(CATEGORIES), faults
    assert (run.out / "timeline.html").stat().st_size > 1_000_000  # plotly.js inline
    run.passed(
        *(f"faults_applied_{c}" for c in CATEGORIES),
        *(f"availability_{c}" for c in CATEGORIES),
        "faults_healed",
        "acked_writes_visible_after_healing",
        "no_stale_reads",
        "no_stale_reads_by_content",
        "nothing_lost",
    )
    assert run.code == 0
