"""Hand-built history tables for checker tests (times given in milliseconds)."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

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

    def write(self, *, version: int | None, send: float, recv: float, **row: Any) -> int:
        return self.add(op="write", version_written=version, send=send, recv=recv, **row)

    def read(self, *, seen: int | None, send: float, recv: float, **row: Any) -> int:
        row.setdefault("key", "k")
        row.setdefault("pattern_name", "execute_tool")
        return self.add(op="read", version_seen=seen, send=send, recv=recv, **row)

    def store(
        self, *, topic: str, memory_id: str | None, send: float, recv: float, **row: Any
    ) -> int:
        """A tracked store_memory (content = topic) acknowledged with `memory_id`."""
        row.setdefault("version_written", None)
        return self.add(
            op="write",
            method="store_memory",
            topic=topic,
            key=topic,
            memory_id=memory_id,
            send=send,
            recv=recv,
            **row,
        )

    def recall(
        self, *, topic: str, seen_ids: list[str] | None, send: float, recv: float, **row: Any
    ) -> int:
        """A tracked read of `topic` whose answer included the memories `seen_ids`."""
        row.setdefault("version_seen", None)
        row.setdefault("pattern_name", "recall_topic")
        row.setdefault("method", "execute_pattern")
        row.setdefault("cache_tier", "l1")
        return self.add(
            op="read",
            topic=topic,
            key=f"what do we know about {topic}",
            memories_seen=seen_ids,
            send=send,
            recv=recv,
            **row,
        )

    def table(self) -> pa.Table:
        return concat([self.buf.drain()]) if len(self.buf) else concat([])
