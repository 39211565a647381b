"""Plan 4.3 at ci scale: three instances, ≥ 100 agents in team namespaces; strict mode is
coherent, and the deliberately broken cache makes the checker report stale reads."""

from __future__ import annotations

from typing import Any

import pyarrow.parquet as pq
import pytest

from analysis.schema import COLUMNS
from experiments.coherency import EXPERIMENT


@pytest.mark.slow
def test_coherency_strict_ci(infra: Any, run_ci: Any) -> None:
    run = run_ci(EXPERIMENT, infra)
    for name in ("history.parquet", "junit.xml", "metrics.json", "summary.md", "index.html"):
        assert (run.out / name).is_file(), name
    history = pq.read_table(run.out / "history.parquet")
    assert set(COLUMNS) <= set(history.column_names)
    assert len(set(history.column("instance_id").drop_null().to_pylist())) == 3
    assert len(set(history.column("agent_id").to_pylist())) >= 100
    assert any(ns.startswith("team:") for ns in history.column("namespace").to_pylist())
    run.passed(
        "success_rate",
        "instances_with_rows",
        "distinct_agents",
        "nothing_lost",
        "updates_visible_across_instances",
        "consistent_invalidation",
        "checkable_reads",
        "versioned_writes",
        "no_stale_reads",
        "read_your_writes",
        "monotonic_reads",
        "no_duplicate_keys",
        "consistent_routing",
        "no_stale_reads_by_content",
        "content_checkable_reads",
        # Needs a service that reports `global_version` on execute_pattern (issue 9).
        "global_generation_known",
    )
    assert run.metrics["stale_reads"] == 0 and run.metrics["stale_reads_by_content"] == 0
    clocks = run.metrics["clocks"]
    assert clocks and all(c["end"] is not None for c in clocks.values())
    print("propagation", run.metrics["propagation_ms"], "hit rate", run.metrics["cache_hit_rate"])
    assert run.code == 0


def _flagship_facts() -> dict[str, Any]:
    return {
        "teams": 1,
        "agents_in_topology": 9,
        "load_phases": ["load"],
        "global_scope_patterns": [],
        "pattern_ttls": {},
        "global_invalidation_weight": 0.0,
    }


def _never_invalidated(rows: Any, label: int | None) -> Any:
    """A service whose stores never invalidate any cache, whatever version labels it reports:
    every instance keeps answering each topic from the entry it cached before the stores."""
    from actors.workload import topic_text

    r = rows()
    ns = "team:run-0"
    topics = [topic_text(ns, k) for k in range(3)]
    instances = ("i0", "i1", "i2")
    t = 0.0
    for topic in topics:  # warm-up: every instance caches every topic's (empty) answer
        for inst in instances:
            r.recall(topic=topic, seen_ids=[], send=t, recv=t + 1, instance_id=inst,
                     namespace=ns, version_seen=1, phase="warmup", agent_id=f"a-{inst}",
                     session_id=f"s-{inst}")  # fmt: skip
            t += 2
    for n, topic in enumerate(topics * 4):
        inst = instances[n % 3]
        r.store(topic=topic, memory_id=f"m{n}", send=t, recv=t + 3, instance_id=inst,
                namespace=ns, version_written=label, phase="load", agent_id=f"w{n}")  # fmt: skip
        t += 5
        for reader in instances:
            r.recall(topic=topic, seen_ids=[], send=t, recv=t + 1, instance_id=reader,
                     namespace=ns, version_seen=1, global_version_seen=0, phase="load",
                     agent_id=f"a-{reader}", session_id=f"s-{reader}")  # fmt: skip
            t += 2
    return r.table()


@pytest.mark.parametrize("label", [None, 1], ids=["version_null", "unchanged_generation"])
def test_flagship_fails_a_cache_that_is_never_invalidated(rows: Any, label: int | None) -> None:
    """Acceptance: the flagship's verdict on recorded rows of a service whose memory writes
    never invalidate the cache. The version check alone saw no stale read in that situation;
    the content check sees every miss, so the run fails."""
    from analysis import checks
    from tests.experiments.offline import judge

    table = _never_invalidated(rows, label)
    found, outcome = judge(EXPERIMENT, table, _flagship_facts(), "--global-invalidations", "0")
    assert outcome.coherency is not None and outcome.coherency.stale.count == 0
    content = found["no_stale_reads_by_content"]
    # Each of the 3 reads after the k-th store of a topic misses all k stores: 3 × (1+2+3+4) × 3.
    assert content.failed and content.critical and content.measured == 90
    assert not checks.tally(list(found.values())).ok


def test_every_experiment_accepts_allow_skip() -> None:
    from experiments.runner import build_parser

    args = build_parser(EXPERIMENT).parse_args(["--allow-skip", "a", "--allow-skip", "b"])
    assert args.allow_skip == ["a", "b"]
    assert build_parser(EXPERIMENT).parse_args([]).allow_skip == []
