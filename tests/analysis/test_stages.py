"""The latency breakdown: server stage timings of each row stacked against its latency."""

from __future__ import annotations

import pyarrow as pa
import pytest

from analysis import stages
from analysis.report import _conform, load_history
from analysis.schema import HISTORY_SCHEMA
from analysis.stage_plots import breakdown_figures
from tests.history_rows import Rows

#: One cached execute_pattern: 1 ms queued, 3 ms routing (2 of them encoding), 4 ms in the
#: cache, 10 ms executing of which 6 in the database, 2 ms recording; the engine's total 20 ms.
TIMINGS = {
    "queue": 1.0,
    "route": 3.0,
    "embed": 2.0,
    "cache": 4.0,
    "execute": 10.0,
    "db": 6.0,
    "record": 2.0,
    "total": 20.0,
}


def _history(slow_tail: bool = True) -> pa.Table:
    r = Rows()
    for i in range(40):
        # The slowest three (of 40) wait 400 ms outside the server: the tail is unaccounted.
        latency = 430.0 if slow_tail and i >= 37 else 30.0
        r.add(
            send=i * 100.0,
            recv=i * 100.0 + latency,
            op="read",
            method="execute_pattern",
            instance_id=f"i{i % 2}",
            server_timings=TIMINGS,
        )
    for i in range(20):  # a method that reports no timings: all of it is unaccounted
        r.add(send=i * 100.0, recv=i * 100.0 + 5.0, op="write", method="store_memory")
    r.add(send=0.0, recv=1.0, op="read", method="execute_pattern", success=False)
    return r.table()


def test_segments_are_disjoint_and_add_up_to_the_latency() -> None:
    table = _history(slow_tail=False)
    segs, timed = stages.segments(table)
    first = {name: float(v[0]) for name, v in segs.items()}
    assert first["execute"] == pytest.approx(4.0)  # db taken out of execute
    assert first["db"] == pytest.approx(6.0)
    assert first[stages.SERVER_OTHER] == pytest.approx(1.0)  # 20 − (3 + 4 + 10 + 2)
    assert first[stages.UNACCOUNTED] == pytest.approx(9.0)  # 30 − 1 − 20
    assert "embed" not in first  # spans route and execute: never stacked
    assert sum(first.values()) == pytest.approx(30.0)
    assert timed[:40].all() and not timed[40:].any()
    untimed = {name: float(v[45]) for name, v in segs.items()}
    assert untimed[stages.UNACCOUNTED] == pytest.approx(5.0) and sum(untimed.values()) == 5.0


def test_breakdown_tells_what_the_tail_is_made_of() -> None:
    by_method = stages.breakdown(_history(), "method")
    pattern = by_method["execute_pattern"]
    assert pattern["requests"] == 40 and pattern["timed"] == 40  # the failed row is left out
    assert pattern["latency_p95_ms"] == pytest.approx(430.0)
    assert pattern["tail_requests"] == 2
    assert pattern["tail"][stages.UNACCOUNTED] == pytest.approx(409.0)
    assert pattern["tail_accounted_pct"] == pytest.approx(100 * 21 / 430)
    assert pattern["other_stages_mean_ms"] == {"embed": pytest.approx(2.0)}
    # Without the slow tail the stages explain most of it: the check can tell the two apart.
    calm = stages.breakdown(_history(slow_tail=False), "method")["execute_pattern"]
    assert calm["tail_accounted_pct"] == pytest.approx(70.0)
    # store_memory reports no timings: its share is unknown, not 0 %.
    assert by_method["store_memory"]["tail_accounted_pct"] is None
    assert by_method["store_memory"]["tail"][stages.UNACCOUNTED] == pytest.approx(5.0)
    assert set(stages.breakdown(_history(), "instance_id")) == {"i0", "i1"}
    # By instance and phase: only the requests with timings (store_memory would dilute them).
    by_instance = stages.summary(_history())["by_instance"]
    assert by_instance["i0"]["requests"] == by_instance["i0"]["timed"] == 20


def test_a_stage_the_analysis_does_not_know_is_listed_not_stacked() -> None:
    r = Rows()
    for i in range(20):
        r.add(
            send=i,
            recv=i + 10.0,
            op="read",
            method="execute_pattern",
            server_timings={"warp": 3.0, "total": 4.0},
        )
    group = stages.breakdown(r.table())["execute_pattern"]
    assert group["other_stages_mean_ms"] == {"warp": pytest.approx(3.0)}
    assert group["mean"][stages.SERVER_OTHER] == pytest.approx(4.0)


def test_runs_recorded_before_the_column_load_with_it_null(tmp_path) -> None:
    old = _history().drop_columns(["server_timings"])
    import pyarrow.parquet as pq

    pq.write_table(old, tmp_path / "history.parquet")
    table = load_history(tmp_path)
    assert table.schema == HISTORY_SCHEMA.with_metadata(None)
    assert table.column("server_timings").null_count == table.num_rows
    assert stages.breakdown(table)["execute_pattern"]["timed"] == 0
    assert _conform(_history(), HISTORY_SCHEMA).column("server_timings").null_count == 21


def test_markdown_table_and_figures() -> None:
    history = _history()
    summary = stages.summary(history)
    lines = stages.markdown_table(summary)
    text = "\n".join(lines)
    assert "Where the time goes" in text and "| execute_pattern | 40 (40) | 430.0 |" in text
    assert "5 %" in text  # the accounted share of the tail
    assert "| store_memory | 20 (0) | 5.0 | 5.0 |" in text and "no timings |\n" in text
    faults = [
        {"fault": "pause:redis@1s", "category": "process", "applied_ns": 1e9, "healed_ns": 2e9}
    ]
    figures = breakdown_figures(history, summary, faults)
    assert [f.split('id="')[1].split('"')[0] for f in figures] == [
        "plot-breakdown-method",
        "plot-breakdown-instance",
        "plot-breakdown-time",
    ]
    assert "pause:redis" in figures[2]  # the fault band on the time axis
    assert breakdown_figures(history.slice(0, 0), summary) == []
