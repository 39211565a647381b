"""Numpy view of the rows the coherency checks use: acknowledged writes and versioned reads.

Clock assumption (documented once, relied on everywhere): every `t_send_ns`/`t_recv_ns` is in one
clock domain — agents on one machine, or hosts with synchronised clocks whose skew is far below
the intervals being judged. "A write was acknowledged before a read began" means the writer's
`t_recv_ns` < the reader's `t_send_ns`; skew between hosts would show up as false (or missed)
stale reads of roughly the skew's size.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_COLUMNS = (
    "agent_id",
    "session_id",
    "instance_id",
    "namespace",
    "key",
    "pattern_name",
    "t_send_ns",
    "t_recv_ns",
)


@dataclass(frozen=True)
class Ops:
    """Selected rows as arrays; `row` is the index in the original table."""

    row: np.ndarray
    version: np.ndarray
    degraded: np.ndarray
    cols: dict[str, np.ndarray]

    def __len__(self) -> int:
        return int(self.row.size)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.cols[name]

    def record(self, i: int) -> dict[str, object]:
        """One selected row as a plain dict (for report examples)."""
        out: dict[str, object] = {"row": int(self.row[i]), "version": int(self.version[i])}
        for name, values in self.cols.items():
            value = values[i]
            out[name] = value.item() if isinstance(value, np.generic) else value
        out["degraded"] = bool(self.degraded[i])
        return out


def _select(table: pa.Table, mask: pa.ChunkedArray, version_col: str) -> Ops:
    rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    sub = table.take(pa.array(rows, type=pa.int64()))
    cols = {name: sub.column(name).to_numpy(zero_copy_only=False) for name in _COLUMNS}
    cols["t_send_ns"] = cols["t_send_ns"].astype(np.int64)
    cols["t_recv_ns"] = cols["t_recv_ns"].astype(np.int64)
    degraded = pc.fill_null(sub.column("degraded"), False).to_numpy(zero_copy_only=False)
    version = sub.column(version_col).to_numpy(zero_copy_only=False).astype(np.int64)
    return Ops(row=rows, version=version, degraded=degraded.astype(bool), cols=cols)


def acked_writes(table: pa.Table) -> Ops:
    """Successful write/invalidate rows that report the generation they produced."""
    is_write = pc.is_in(table.column("op"), pa.array(["write", "invalidate"]))
    mask = pc.and_(
        pc.and_(is_write, pc.equal(table.column("success"), True)),
        pc.and_(
            pc.is_valid(table.column("version_written")), pc.is_valid(table.column("namespace"))
        ),
    )
    return _select(table, mask, "version_written")


def versioned_reads(table: pa.Table) -> Ops:
    """Successful read rows that report the generation their answer came from."""
    mask = pc.and_(
        pc.and_(pc.equal(table.column("op"), "read"), pc.equal(table.column("success"), True)),
        pc.and_(pc.is_valid(table.column("version_seen")), pc.is_valid(table.column("namespace"))),
    )
    return _select(table, mask, "version_seen")


def objects(items: list[object]) -> np.ndarray:
    """A 1-D object array of the items (tuples stay whole)."""
    # np.array() would turn a list of tuples into a 2-D array; keys must stay 1-D objects.
    out = np.empty(len(items), dtype=object)
    out[:] = items
    return out


def group_keys(ops: Ops, *names: str) -> np.ndarray:
    """One hashable key per row from several columns (None where any part is null)."""
    parts = [ops[name].tolist() for name in names]
    keys = [None if any(p is None for p in key) else key for key in zip(*parts, strict=True)]
    return objects(keys)


def groups(keys: np.ndarray) -> Iterator[tuple[object, np.ndarray]]:
    """(key, indices) for each distinct non-null key."""
    buckets: dict[object, list[int]] = {}
    for i, key in enumerate(keys.tolist()):
        if key is not None:
            buckets.setdefault(key, []).append(i)
    for key, idx in buckets.items():
        yield key, np.asarray(idx, dtype=np.int64)
