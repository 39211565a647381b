"""The history row: one per request an agent sent, as a fixed Arrow schema.

Checkers and reports read only tables of this schema, so a run can be re-checked later from its
Parquet files. Swarms fill `HistoryBuffer`s (columnar, append-only) and ship record batches.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa

HISTORY_SCHEMA = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("scenario", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("instance_id", pa.string()),
        pa.field("node_id", pa.string()),
        pa.field("method", pa.string(), nullable=False),
        pa.field("pattern_name", pa.string()),
        pa.field("namespace", pa.string()),
        pa.field("key", pa.string()),
        # read | write | invalidate | other
        pa.field("op", pa.string(), nullable=False),
        pa.field("version_seen", pa.int64()),
        pa.field("version_written", pa.int64()),
        pa.field("cache_hit", pa.bool_()),
        # l1 | l2 | none
        pa.field("cache_tier", pa.string()),
        pa.field("success", pa.bool_(), nullable=False),
        pa.field("error_code", pa.int64()),
        pa.field("error_reason", pa.string()),
        pa.field("t_send_ns", pa.int64(), nullable=False),
        pa.field("t_recv_ns", pa.int64(), nullable=False),
        pa.field("latency_ms", pa.float64(), nullable=False),
        pa.field("server_time_ms", pa.float64()),
        pa.field("tokens_used", pa.int64()),
        pa.field("tokens_baseline", pa.int64()),
        # the prompt built from the whole pattern result, before a budget cut it (`truncated`)
        pa.field("tokens_untrimmed", pa.int64()),
        pa.field("truncated", pa.bool_()),
        pa.field("degraded", pa.bool_()),
        pa.field("route", pa.string()),
        pa.field("phase", pa.string()),
    ]
)

COLUMNS: tuple[str, ...] = tuple(HISTORY_SCHEMA.names)


class ColumnBuffer:
    """Columnar append-only buffer of rows of one schema; drained into Arrow record batches."""

    schema: pa.Schema
    kind = "row"

    def __init__(self) -> None:
        self._required = frozenset(f.name for f in self.schema if not f.nullable)
        self._columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self._rows = 0

    def __len__(self) -> int:
        return self._rows

    def append(self, **row: Any) -> None:
        """Add one row; unknown columns are an error, missing optional ones are null."""
        unknown = row.keys() - self._columns.keys()
        if unknown:
            raise KeyError(f"unknown {self.kind} columns: {sorted(unknown)}")
        missing = self._required - row.keys()
        if missing:
            raise KeyError(f"missing required {self.kind} columns: {sorted(missing)}")
        for name, values in self._columns.items():
            values.append(row.get(name))
        self._rows += 1

    def drain(self) -> pa.RecordBatch:
        """Everything buffered so far as one record batch; the buffer is emptied."""
        batch = pa.RecordBatch.from_pydict(self._columns, schema=self.schema)
        self._columns = {name: [] for name in self.schema.names}
        self._rows = 0
        return batch


class HistoryBuffer(ColumnBuffer):
    """History rows: one per request an agent sent."""

    schema = HISTORY_SCHEMA
    kind = "history"


def empty_table() -> pa.Table:
    return HISTORY_SCHEMA.empty_table()


def concat(batches: list[pa.RecordBatch]) -> pa.Table:
    """One table from the batches of every swarm (schema checked)."""
    if not batches:
        return empty_table()
    return pa.Table.from_batches(batches, schema=HISTORY_SCHEMA)
