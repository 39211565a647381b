"""Hand-built history tables for the analysis tests (times given in milliseconds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest

from analysis.schema import HistoryBuffer, concat

MS = 1_000_000


class Rows:
    """Builds a history table row by row; returns each row's index for assertions."""

    def __init__(self) -> None:
        self.buf = HistoryBuffer()
        self.n = 0

    def add(self, *, send: float, recv: float, **row: Any) -> int:
        defaults: dict[str, Any] = {
            "run_id": "run-test",
            "scenario": "unit",
            "agent_id": "agent-0",
            "method": "tools/call",
            "namespace": "ns",
            "instance_id": "i0",
            "success": True,
        }
        values = defaults | row
        values.setdefault("latency_ms", recv - send)
        self.buf.append(t_send_ns=int(send * MS), t_recv_ns=int(recv * MS), **values)
        self.n += 1
        return self.n - 1

    def write(self, *, version: int, send: float, recv: float, **row: Any) -> int:
        return self.add(op="write", version_written=version, send=send, recv=recv, **row)

    def read(self, *, seen: int, send: float, recv: float, **row: Any) -> int:
        row.setdefault("key", "k")
        row.setdefault("pattern_name", "execute_tool")
        return self.add(op="read", version_seen=seen, send=send, recv=recv, **row)

    def table(self) -> pa.Table:
        return concat([self.buf.drain()]) if len(self.buf) else concat([])


@pytest.fixture
def rows() -> Callable[[], Rows]:
    """A factory of fresh row builders."""
    return Rows
