"""History rows and mergeable histograms (pure)."""

from __future__ import annotations

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
from analysis.schema import HISTORY_SCHEMA

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
