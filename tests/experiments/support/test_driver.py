"""Reply judging and driver-side recording (no servers: replies and rows are made by hand)."""

from __future__ import annotations

from actors.recorder import CLIENT_ERROR, CLIENT_TIMEOUT, SessionInfo
from experiments.support.driver import DriverLog, judge_reply, missing_fields, violation


def test_reply_ids_match_only_with_the_same_json_type() -> None:
    assert judge_reply({"jsonrpc": "2.0", "id": 1, "result": {}}, 1, None).success
    wrong_type = judge_reply({"jsonrpc": "2.0", "id": "1", "result": {}}, 1, None)
    assert wrong_type.error_code == CLIENT_ERROR
    assert "bad_envelope: id" in str(wrong_type.error_reason)
    both = judge_reply({"jsonrpc": "2.0", "id": 1, "result": {}, "error": {}}, 1, None)
    assert "exactly one" in str(both.error_reason)


def test_errors_keep_code_and_field_and_expect_judges_results() -> None:
    error = {"code": -32602, "message": "bad", "data": {"reason": "invalid_params", "field": "q"}}
    outcome = judge_reply({"jsonrpc": "2.0", "id": "a", "error": error}, "a", None)
    assert (outcome.error_code, outcome.error_reason) == (-32602, "invalid_params field=q")
    reply = {"jsonrpc": "2.0", "id": "a", "result": {"x": 1}}
    wrong = judge_reply(reply, "a", lambda r: missing_fields(r, ("x", "y")))
    assert wrong.error_reason == "missing_fields: y"
    assert violation("late", CLIENT_TIMEOUT).error_code == CLIENT_TIMEOUT


def test_log_rows_take_set_columns_and_drain_once() -> None:
    log = DriverLog("run", "scenario")
    row = log.record(
        phase="p",
        method="get_task",
        session=SessionInfo("agent-1", "s1", "i1"),
        outcome=violation("stale_read_after_write: v1 < v2"),
        t_send_ns=1,
        t_recv_ns=2_000_001,
        key="task-1",
        version_seen=1,
    )
    assert (row["key"], row["version_seen"], row["namespace"]) == ("task-1", 1, "agent-1")
    assert (row["success"], row["op"], row["latency_ms"]) == (False, "read", 2.0)
    batches = log.batches()
    assert sum(b.num_rows for b in batches) == 1 and log.rows == [row]
    assert log.batches() == []
