"""Chaos at ci scale: the coherency workload under a schedule with every fault category
(configs/nemesis/every-kind.yaml), strict mode, and it passes; faults.parquet and timeline.html
are written. The injected-bug runs of chaos (strict, and eventual with a Redis pause) are in
tests/experiments/test_negative_controls.py.

Not in the suite (a second chaos run of ~2 min): `python experiments/chaos.py --scale ci --seed 7`,
the drawn schedule; see docs/experiments.md, "Chaos", for its numbers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from cluster.nemesis.schedule import CATEGORIES
from experiments.chaos import EXPERIMENT
from experiments.runner import build_parser

ROOT = Path(__file__).resolve().parents[2]


def test_seed_7_draws_the_same_schedule_with_every_category() -> None:
    args = build_parser(EXPERIMENT).parse_args(["--scale", "ci", "--seed", "7"])
    first, again = EXPERIMENT.nemesis_schedule(args), EXPERIMENT.nemesis_schedule(args)
    assert first.text() == again.text() and first.categories() == set(CATEGORIES)


#: Every category, no PostgreSQL pause (see the module docstring).
EVERY_KIND = ("--nemesis", str(ROOT / "configs" / "nemesis" / "every-kind.yaml"))


@pytest.mark.slow
def test_chaos_ci_every_kind_passes_strict(private_infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, private_infra, *EVERY_KIND)
    faults = pq.read_table(run.out / "faults.parquet").to_pylist()
    applied = {f["category"] for f in faults if f["applied_ns"] and f["healed_ns"]}
    assert applied == set(CATEGORIES), faults
    assert (run.out / "timeline.html").stat().st_size > 1_000_000  # plotly.js inline
    kinds = ("pause-redis", "reset", "bandwidth", "drop-invalidations", "clock")
    assert sorted(run.metrics["availability_by_kind"]) == sorted(
        (*kinds, "overlapping", "unfaulted")
    )
    # one at a time: at most a request still in flight across a boundary is under two faults
    assert run.metrics["availability_by_kind"]["overlapping"]["rows"] <= 5
    run.passed(
        *(f"faults_applied_{c}" for c in CATEGORIES),
        *(f"availability_{k}" for k in kinds),
        "failures_designed",
        "availability_unfaulted",
        "faults_healed",
        "acked_writes_visible_after_healing",
        "no_stale_reads",
        "no_stale_reads_by_content",
        "nothing_lost",
    )
    assert run.code == 0
