"""The shared row filters and criteria on a small hand-made history table (no servers)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from analysis.rows import (
    all_succeeded,
    between,
    error_code_criterion,
    error_codes,
    reasons_all_contain,
    success_pct,
    where,
    where_in,
)
from analysis.schema import HistoryBuffer


def history(*rows: dict[str, Any]) -> pa.Table:
    buffer = HistoryBuffer()
    for i, row in enumerate(rows):
        base = {"run_id": "r", "scenario": "s", "agent_id": "a", "method": "ping", "op": "other"}
        timing = {"t_send_ns": 100 * i, "t_recv_ns": 100 * i + 50, "latency_ms": 0.05}
        buffer.append(**{**base, **timing, "success": True, **row})
    return pa.Table.from_batches([buffer.drain()])


TABLE = history(
    {"phase": "load", "key": "k1"},
    {
        "phase": "load",
        "key": None,
        "success": False,
        "error_code": -32001,
        "error_reason": "timeout",
    },
    {"phase": None, "key": "k2", "success": False, "error_code": -32002, "error_reason": "db down"},
    {"phase": "warmup", "key": "k1"},
)


def test_where_and_where_in_never_match_nulls_unless_asked() -> None:
    assert where(TABLE, phase="load").num_rows == 2
    assert where(TABLE, phase=None).column("key").to_pylist() == ["k2"]
    assert where(TABLE, phase="load", key="k1").num_rows == 1
    assert where_in(TABLE, "phase", ["load", "warmup"]).num_rows == 3
    assert where_in(TABLE, "key", []).num_rows == 0


def test_between_is_half_open_on_any_time_column() -> None:
    assert between(TABLE, 100, 300).column("t_send_ns").to_pylist() == [100, 200]
    assert between(TABLE, None, 100).num_rows == 1
    assert between(TABLE, 150, None, column="t_recv_ns").num_rows == 3


def test_counts_and_rates() -> None:
    assert error_codes(TABLE) == {"-32001": 1, "-32002": 1}
    assert success_pct(TABLE) == 50.0
    assert success_pct(TABLE.slice(0, 0)) is None


def test_criteria_fail_on_any_bad_or_missing_row() -> None:
    assert all_succeeded("ok", where(TABLE, key="k1"), section="x", description="d").passed
    failed = all_succeeded("bad", TABLE, section="x", description="d")
    assert not failed.passed and "timeout" in str(failed.measured)
    assert not all_succeeded(
        "few", TABLE.slice(0, 1), section="x", description="d", minimum=2
    ).passed
    timeouts = where(TABLE, error_code=-32001)
    assert error_code_criterion(
        "t", timeouts, -32001, section="x", description="d", reason_contains="time"
    ).passed
    assert not error_code_criterion("t", TABLE, -32001, section="x", description="d").passed
    assert not error_code_criterion(
        "t", TABLE.slice(0, 0), -32001, section="x", description="d"
    ).passed
    assert reasons_all_contain("r", timeouts, "time", section="x", expectation="e").passed
    assert not reasons_all_contain(
        "r", TABLE.slice(0, 0), "time", section="x", expectation="e"
    ).passed
