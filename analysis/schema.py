"""The history row: one per request an agent sent, as a fixed Arrow schema.

Checkers and reports read only tables of this schema, so a run can be re-checked later from its
Parquet files. Swarms fill `HistoryBuffer`s (columnar, append-only) and ship record batches.

Times: `t_send_ns` is where latency is measured from (the intended send time in open loop, so a
slow server cannot hide queueing: wrk2), `t_actual_send_ns` when the request really left and
`t_intended_ns` the schedule (open loop only). Every time is on the recording process's clock;
`clock_offset_ns` is that clock minus the driver's (measured NTP-style through Ray at the start
and end of the run) and `clock_uncertainty_ns` bounds the error of that offset. The checkers put
every row on the driver's clock and treat orders closer than the uncertainty as ambiguous.

Content (the coherency set check): a `store_memory` row carries the `memory_id` it wrote, a read
the ids of the memories its answer included (`memories_seen`; null when the answer shows none),
and both a `topic` when the workload tracks content: a write's content is exactly its topic, so a
recall of that topic in the same namespace must return it.

Server stage timings (`server_timings`): the stage -> ms map the server returned with the answer
(`execute_pattern`'s `timings`: queue, route, embed, cache, execute, db, llm, record, total; see
`analysis.stages` for how they nest). Null when the method reported none; a stage missing from a
map did not run. A map, not a column per stage, so a stage the server adds later is kept as is.
Runs recorded before this column load with it null (`analysis.report.load_history`).
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
        # The global generation ("*") a namespace-scoped answer depended on (null: not reported).
        pa.field("global_version_seen", pa.int64()),
        pa.field("t_intended_ns", pa.int64()),
        pa.field("t_actual_send_ns", pa.int64()),
        pa.field("clock_offset_ns", pa.int64()),
        pa.field("clock_uncertainty_ns", pa.int64()),
        pa.field("memory_id", pa.string()),
        pa.field("memories_seen", pa.list_(pa.string())),
        pa.field("topic", pa.string()),
        # A failed write: the server's `data.applied` (false = refused, not applied; null =
        # outcome unknown, so possibly applied).
        pa.field("applied", pa.bool_()),
        # float32: ms to 3 decimals for anything under ~10 s, half the bytes of float64
        pa.field("server_timings", pa.map_(pa.string(), pa.float32())),
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
