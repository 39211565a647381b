"""Numpy view of the rows the coherency checks use: acknowledged writes and versioned reads.

Clocks: every row's times are put on the driver's clock (`clock_offset_ns`, measured per swarm,
see `actors.clock`) and carry that offset's error bound (`clock_uncertainty_ns`). "A write was
acknowledged before a read began" then has three answers: *definitely* (the read's earliest
possible begin is after the write's latest possible ack), *definitely not*, or *ambiguous*
(within the two rows' uncertainties) — ambiguous pairs are counted, never judged. Rows without a
measured offset (older files, the driver's own rows) count as the driver's clock, uncertainty 0.
A read began when it was actually sent (`t_actual_send_ns`, else `t_send_ns`).
"""

from __future__ import annotations

from collections import Counter
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
#: Routes answered by the LLM: no cached generation behind them.
LLM_ROUTES = ("llm", "llm_fallback")


@dataclass(frozen=True)
class Ops:
    """Selected rows as arrays; `row` is the index in the original table.

    `begin`/`end` are the driver-clock send and receive times, `slack` each row's clock
    uncertainty (all ns).
    """

    row: np.ndarray
    version: np.ndarray
    degraded: np.ndarray
    begin: np.ndarray
    end: np.ndarray
    slack: np.ndarray
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
        out["clock_uncertainty_ms"] = float(self.slack[i]) / 1e6
        return out


def _ints(table: pa.Table, name: str, fill: int | pa.ChunkedArray) -> np.ndarray:
    column = pc.fill_null(table.column(name), fill)
    return column.to_numpy(zero_copy_only=False).astype(np.int64)


def clock_columns(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(begin, end, slack) of every row of `table` on the driver's clock (ns)."""
    offset = _ints(table, "clock_offset_ns", 0)
    slack = np.abs(_ints(table, "clock_uncertainty_ns", 0))
    begin = _ints(table, "t_actual_send_ns", table.column("t_send_ns")) - offset
    end = _ints(table, "t_recv_ns", 0) - offset
    return begin, np.maximum(end, begin), slack


def select(table: pa.Table, mask: pa.ChunkedArray | pa.Array, version_col: str | None) -> Ops:
    """The rows of `mask` as `Ops`; `version_col` (None: no version) must be non-null there."""
    rows = np.flatnonzero(pc.fill_null(mask, False).to_numpy(zero_copy_only=False))
    sub = table.take(pa.array(rows, type=pa.int64()))
    cols = {name: sub.column(name).to_numpy(zero_copy_only=False) for name in _COLUMNS}
    cols["t_send_ns"] = cols["t_send_ns"].astype(np.int64)
    cols["t_recv_ns"] = cols["t_recv_ns"].astype(np.int64)
    degraded = pc.fill_null(sub.column("degraded"), False).to_numpy(zero_copy_only=False)
    if version_col is None:
        version = np.zeros(len(rows), dtype=np.int64)
    else:
        version = _ints(sub, version_col, -1)
    begin, end, slack = clock_columns(sub)
    return Ops(
        row=rows,
        version=version,
        degraded=degraded.astype(bool),
        begin=begin,
        end=end,
        slack=slack,
        cols=cols,
    )


def _ok(table: pa.Table) -> pa.ChunkedArray:
    return pc.equal(table.column("success"), True)


def write_mask(table: pa.Table) -> pa.ChunkedArray:
    """Successful write/invalidate rows of a namespace (whatever they reported)."""
    is_write = pc.is_in(table.column("op"), pa.array(["write", "invalidate"]))
    return pc.and_(pc.and_(is_write, _ok(table)), pc.is_valid(table.column("namespace")))


def read_mask(table: pa.Table) -> pa.ChunkedArray:
    """Successful read rows of a namespace."""
    is_read = pc.equal(table.column("op"), "read")
    return pc.and_(pc.and_(is_read, _ok(table)), pc.is_valid(table.column("namespace")))


def acked_writes(table: pa.Table) -> Ops:
    """Successful write/invalidate rows that report the generation they produced."""
    mask = pc.and_(write_mask(table), pc.is_valid(table.column("version_written")))
    return select(table, mask, "version_written")


def versioned_reads(table: pa.Table) -> Ops:
    """Successful read rows that report the generation their answer came from."""
    mask = pc.and_(read_mask(table), pc.is_valid(table.column("version_seen")))
    return select(table, mask, "version_seen")


def cached_scoped_read_mask(table: pa.Table, global_namespace: str) -> pa.ChunkedArray:
    """Successful reads of a namespace other than the global one answered through the cache
    (`cache_tier` set): those answers depend on the global generation too."""
    return pc.and_(
        pc.and_(read_mask(table), pc.not_equal(table.column("namespace"), global_namespace)),
        pc.is_valid(table.column("cache_tier")),
    )


def globally_versioned_reads(table: pa.Table, global_namespace: str) -> Ops:
    """Cached namespace-scoped reads that report the global generation their answer depended
    on (`global_version_seen`)."""
    mask = pc.and_(
        cached_scoped_read_mask(table, global_namespace),
        pc.is_valid(table.column("global_version_seen")),
    )
    return select(table, mask, "global_version_seen")


def read_reasons(table: pa.Table) -> Counter[str]:
    """Successful reads by why they can (`checkable`) or cannot be version-checked: `degraded`
    (served while Redis was down), `llm_routed` (answered by the LLM), `no_version`."""
    reads = table.filter(read_mask(table))
    degraded = pc.fill_null(reads.column("degraded"), False).to_pylist()
    routes = reads.column("route").to_pylist()
    versions = reads.column("version_seen").to_pylist()
    out: Counter[str] = Counter()
    for deg, route, version in zip(degraded, routes, versions, strict=True):
        if deg:
            out["degraded"] += 1
        elif route in LLM_ROUTES:
            out["llm_routed"] += 1
        elif version is None:
            out["no_version"] += 1
        else:
            out["checkable"] += 1
    return out


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


def constant_key(ops: Ops, key: object) -> np.ndarray:
    """The same group key for every row (e.g. the global namespace)."""
    return objects([key] * len(ops))


def groups(keys: np.ndarray) -> Iterator[tuple[object, np.ndarray]]:
    """(key, indices) for each distinct non-null key."""
    buckets: dict[object, list[int]] = {}
    for i, key in enumerate(keys.tolist()):
        if key is not None:
            buckets.setdefault(key, []).append(i)
    for key, idx in buckets.items():
        yield key, np.asarray(idx, dtype=np.int64)
