"""History rows and mergeable histograms (pure)."""

from __future__ import annotations

import pytest

from actors.recorder import (
    ALL,
    CLIENT_TIMEOUT,
    Outcome,
    Recorder,
    SessionInfo,
    build_row,
    merge_outputs,
)
from actors.workload import RequestSpec
from analysis import hdr
from analysis.schema import HISTORY_SCHEMA, HistoryBuffer

READ = RequestSpec("execute_pattern", {"query": "q"}, "read", "agent-1", key="q")


def _row(outcome: Outcome) -> dict:
    return build_row(
        run_id="r",
        scenario="s",
        phase="load",
        request=READ,
        session=SessionInfo("agent-1", "sess-1", "inst-welcome", "node-1"),
        outcome=outcome,
        t_send_ns=1_000_000,
        t_recv_ns=6_000_000,
    )


def test_success_row_takes_fields_from_result() -> None:
    row = _row(
        Outcome.ok(
            {
                "success": True,
                "instance_id": "inst-2",
                "version": 4,
                "cache_hit": True,
                "cache_tier": "l1",
                "execution_time_ms": 1.5,
                "tokens_used": 12,
                "tokens_baseline": 400,
                "route": "infrastructure",
                "pattern_name": "db_health",
            }
        )
    )
    assert row["instance_id"] == "inst-2"  # the response wins over the welcome
    assert row["version_seen"] == 4 and row["cache_tier"] == "l1" and row["cache_hit"] is True
    assert row["latency_ms"] == 5.0 and row["server_time_ms"] == 1.5
    assert row["success"] is True and row["error_code"] is None
    assert row["op"] == "read" and row["phase"] == "load" and row["pattern_name"] == "db_health"
    assert set(row) == set(HISTORY_SCHEMA.names)


def test_failure_rows_carry_code_and_reason() -> None:
    rpc = _row(Outcome(error_code=-32002, error_reason="database_unavailable", error_message="x"))
    assert rpc["success"] is False and rpc["error_code"] == -32002
    assert rpc["instance_id"] == "inst-welcome"
    client = _row(Outcome.client_failure(CLIENT_TIMEOUT, "slow"))
    assert client["error_code"] == CLIENT_TIMEOUT and client["error_reason"] == "client_timeout"
    tool = _row(Outcome.ok({"success": False, "error": "step 2 failed"}))
    assert tool["success"] is False and tool["error_reason"] == "step 2 failed"


def test_version_seen_alias_and_written() -> None:
    row = _row(Outcome.ok({"version_seen": 3, "version_written": 5}))
    assert row["version_seen"] == 3 and row["version_written"] == 5


def test_recorder_drains_batches_and_histograms_that_merge_exactly() -> None:
    outputs = []
    latencies = []
    for swarm in range(3):
        rec = Recorder("run", "scn")
        for i in range(50):
            latency_ns = (swarm * 50 + i + 1) * 1_000_000
            latencies.append(latency_ns / 1e6)
            rec.record(
                phase="load",
                request=READ,
                session=SessionInfo(f"a{swarm}"),
                outcome=Outcome.ok({"success": True}),
                t_send_ns=0,
                t_recv_ns=latency_ns,
            )
        assert len(rec) == 50
        outputs.append(rec.drain())
        assert len(rec) == 0
    table, hists = merge_outputs(outputs)
    assert table.num_rows == 150 and table.schema == HISTORY_SCHEMA
    assert hists[ALL].get_total_count() == 150
    assert hists["execute_pattern"].get_total_count() == 150
    exact = hdr.from_ms(latencies)
    assert hdr.percentile_ms(hists[ALL], 99) == hdr.percentile_ms(exact, 99)


def test_merge_of_nothing_is_an_empty_table() -> None:
    table, hists = merge_outputs([])
    assert table.num_rows == 0 and hists == {}


def _memories(result: dict) -> list[str] | None:
    return _row(Outcome.ok(result))["memories_seen"]


def test_memories_seen_from_every_answer_shape() -> None:
    hits = [{"memory_id": 7, "content": "a"}, {"memory_id": 9, "content": "b"}]
    recall = {"results": hits, "count": 2, "version_seen": 3}
    assert _memories(recall) == ["7", "9"]  # recall_memory itself
    memory = {"result": {"action": "recall", "output": recall}, "version": 3}
    assert _memories(memory) == ["7", "9"]  # a memory pattern (cached or computed)
    hybrid = {"result": {"parts": {"memory": {"ok": True, "action": "recall", "output": recall}}}}
    assert _memories(hybrid) == ["7", "9"]
    assert _memories({"result": {"parts": {"memory": {"ok": False}}}}) is None
    assert _memories({"result": {"action": "store", "output": {"memory_id": 3}}}) is None
    assert _memories({"result": {"answer": "llm text"}, "route": "llm"}) is None
    assert _memories({"result": {"action": "recall", "output": {"results": []}}}) == []


def test_store_rows_carry_memory_id_topic_and_applied() -> None:
    store = RequestSpec("store_memory", {}, "write", "team:x", key="t", topic="t")
    row = build_row(
        run_id="r",
        scenario="s",
        phase="load",
        request=store,
        session=SessionInfo("agent-1"),
        outcome=Outcome.ok({"memory_id": 41, "version_written": 2}),
        t_send_ns=1,
        t_recv_ns=2,
    )
    assert row["memory_id"] == "41" and row["topic"] == "t" and row["memories_seen"] is None
    refused = Outcome(error_code=-32002, error_reason="cache_unavailable", applied=False)
    assert _row(refused)["applied"] is False
    assert _row(Outcome(error_code=-32002))["applied"] is None  # unknown: possibly applied


def test_open_loop_rows_keep_intended_and_actual_send_times() -> None:
    common = dict(
        run_id="r",
        scenario="s",
        phase="load",
        request=READ,
        session=SessionInfo("agent-1"),
        outcome=Outcome.ok({}),
        t_recv_ns=30_000_000,
    )
    late = build_row(**common, t_send_ns=12_000_000, t_intended_ns=10_000_000)
    assert late["t_send_ns"] == 10_000_000 and late["t_intended_ns"] == 10_000_000
    assert late["t_actual_send_ns"] == 12_000_000
    assert late["latency_ms"] == 20.0  # from the intended time: queueing is not hidden
    closed = build_row(**common, t_send_ns=12_000_000)
    assert closed["t_intended_ns"] is None and closed["t_actual_send_ns"] == 12_000_000
    assert closed["latency_ms"] == 18.0


def test_global_version_is_recorded() -> None:
    assert _row(Outcome.ok({"version": 3, "global_version": 9}))["global_version_seen"] == 9
    assert _row(Outcome.ok({"version": 3}))["global_version_seen"] is None


def test_server_stage_timings_are_kept_and_null_when_not_reported() -> None:
    timings = {"queue": 0.4, "route": 1, "cache": 2.5, "bogus": "x", "total": 4.25}
    row = _row(Outcome.ok({"timings": timings}))
    assert row["server_timings"] == {"queue": 0.4, "route": 1.0, "cache": 2.5, "total": 4.25}
    assert _row(Outcome.ok({"success": True}))["server_timings"] is None
    assert _row(Outcome.client_failure(CLIENT_TIMEOUT, "late"))["server_timings"] is None
    buf = HistoryBuffer()
    buf.append(**row)
    stored = buf.drain().column("server_timings").to_pylist()[0]
    assert dict(stored) == pytest.approx(row["server_timings"])
