"""Row helpers shared by the cache experiments (1.1, 1.2, 4.1, 4.2, 4.3): pure functions over the
history table, plus the one fact they need from the pattern catalogue.

Why `scope_namespaces`: an answer of a `cache_scope: global` pattern is cached under the global
namespace "*" and carries the *global* generation as its version, while its row names the
caller's namespace. Left as is, the coherency checker would compare a global generation with
the caller's namespace generation (false monotonic/stale findings). The rows are re-labelled
"*" before checking, which is what the answer really depended on.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.coherency import check_coherency

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = PROJECT_ROOT / "configs" / "patterns.yaml"
GLOBAL_NAMESPACE = "*"


def global_scope_patterns(path: Path = CATALOGUE) -> list[str]:
    """Names of the catalogue's patterns cached once for every caller (`cache_scope: global`)."""
    data = yaml.safe_load(path.read_text()) or {}
    return sorted(
        str(p["name"]) for p in data.get("patterns", []) if p.get("cache_scope") == "global"
    )


def scope_namespaces(table: pa.Table, global_patterns: Iterable[str]) -> pa.Table:
    """The table with execute_pattern rows of global-scope patterns moved to namespace "*"."""
    names = pa.array(sorted(set(global_patterns)), type=pa.string())
    if table.num_rows == 0 or len(names) == 0:
        return table
    is_global = pc.and_(
        pc.equal(table.column("method"), "execute_pattern"),
        pc.fill_null(pc.is_in(table.column("pattern_name"), names), False),
    )
    column = pc.if_else(is_global, GLOBAL_NAMESPACE, table.column("namespace"))
    index = table.schema.get_field_index("namespace")
    return table.set_column(index, table.schema.field(index), column)


def rows_of(table: pa.Table, *, phases: Iterable[str] | None = None, **equal: Any) -> pa.Table:
    """Rows of the given phases whose columns equal the given values (None = any)."""
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if phases is not None:
        wanted = pa.array(list(phases), type=pa.string())
        mask = pc.and_(mask, pc.fill_null(pc.is_in(table.column("phase"), wanted), False))
    for name, value in equal.items():
        if value is not None:
            mask = pc.and_(mask, pc.fill_null(pc.equal(table.column(name), value), False))
    return table.filter(mask)


def between(table: pa.Table, start_ns: int | None, end_ns: int | None) -> pa.Table:
    """Rows sent in [start_ns, end_ns) (either bound may be None)."""
    mask = pa.array(np.ones(table.num_rows, dtype=bool))
    if start_ns is not None:
        mask = pc.and_(mask, pc.greater_equal(table.column("t_send_ns"), start_ns))
    if end_ns is not None:
        mask = pc.and_(mask, pc.less(table.column("t_send_ns"), end_ns))
    return table.filter(mask)


def _col(table: pa.Table, name: str) -> list[Any]:
    return table.column(name).to_pylist()


def cross_instance_visibility(table: pa.Table) -> dict[str, int]:
    """For each acked write on instance A and each other instance B that served a read of the
    same namespace begun after the ack: did any such read on B see the written generation?

    Counts `visible`, `invisible` (B answered later but never with it) and `unobserved`
    (B served no read after the ack), plus `writes` and `writes_seen_everywhere` (visible on
    every other instance that served reads of the namespace).
    """
    ok = pc.equal(table.column("success"), True)
    w = table.filter(
        pc.and_(
            pc.and_(ok, pc.is_in(table.column("op"), pa.array(["write", "invalidate"]))),
            pc.and_(
                pc.is_valid(table.column("version_written")),
                pc.is_valid(table.column("instance_id")),
            ),
        )
    )
    r = table.filter(
        pc.and_(
            pc.and_(ok, pc.equal(table.column("op"), "read")),
            pc.and_(
                pc.is_valid(table.column("version_seen")), pc.is_valid(table.column("namespace"))
            ),
        )
    )
    reads: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = {}
    by_key: dict[tuple[str, str], list[tuple[int, int]]] = {}
    for ns, inst, send, seen in zip(
        _col(r, "namespace"),
        _col(r, "instance_id"),
        _col(r, "t_send_ns"),
        _col(r, "version_seen"),
        strict=True,
    ):
        by_key.setdefault((ns, inst), []).append((send, seen))
    instances_of: dict[str, set[str]] = {}
    for (ns, inst), items in by_key.items():
        items.sort()
        reads[(ns, inst)] = (np.array([s for s, _ in items]), np.array([v for _, v in items]))
        instances_of.setdefault(ns, set()).add(inst)
    out = dict.fromkeys(
        ("writes", "visible", "invisible", "unobserved", "writes_seen_everywhere"), 0
    )
    for ns, inst, ack, gen in zip(
        _col(w, "namespace"),
        _col(w, "instance_id"),
        _col(w, "t_recv_ns"),
        _col(w, "version_written"),
        strict=True,
    ):
        out["writes"] += 1
        everywhere = True
        for other in sorted(instances_of.get(ns, set()) - {inst}):
            send, seen = reads[(ns, other)]
            after = seen[np.searchsorted(send, ack, side="right") :]
            if after.size == 0:
                out["unobserved"] += 1
                everywhere = False
            elif (after >= gen).any():
                out["visible"] += 1
            else:
                out["invisible"] += 1
                everywhere = False
        out["writes_seen_everywhere"] += int(everywhere and ns in instances_of)
    return out


def visibility_criteria(
    vis: dict[str, int], *, section: str, critical: bool = True, min_pairs: int = 1
) -> list[Criterion]:
    """Plan 4.3 "updates visible across all instances", judged from `cross_instance_visibility`:
    of the (write on A, later read on B ≠ A) pairs, the share where B served the written
    generation; at least `min_pairs` such pairs are needed."""
    observed = vis["visible"] + vis["invisible"]
    rate = 100.0 * vis["visible"] / observed if observed else None
    return [
        checks.at_least(
            "updates_visible_across_instances",
            rate,
            100.0,
            evidence=Evidence("(write on A, later read on B≠A) pairs", observed, min_pairs),
            description="of the pairs (acked write on instance A, read of the namespace on "
            "B≠A begun after the ack), the share where B served the written generation",
            unit="%",
            section=section,
            critical=critical,
        ),
    ]


def pattern_ttls(path: Path = CATALOGUE) -> dict[str, float]:
    """Cache TTL (s) of every catalogue pattern, defaults by type applied (fills check)."""
    data = yaml.safe_load(path.read_text()) or {}
    defaults = data.get("defaults", {})
    out = {}
    for p in data.get("patterns", []):
        ttl = p.get("cache_ttl_s", defaults.get(p.get("type"), {}).get("cache_ttl_s"))
        if ttl is not None:
            out[str(p["name"])] = float(ttl)
    return out


def per_instance_counts(table: pa.Table) -> dict[str, int]:
    """Rows per instance id (None as 'none')."""
    values = [v or "none" for v in _col(table, "instance_id")]
    ids, counts = np.unique(np.array(values, dtype=object), return_counts=True)
    return {str(i): int(c) for i, c in zip(ids, counts, strict=True)}


def fills_per_key_version(table: pa.Table) -> dict[str, float | int]:
    """Instances that computed (miss, not degraded) each (namespace, key, version): ideally 1,
    since the cross-instance lock lets one instance fill and the others read it from L2."""
    reads = table.filter(
        pc.and_(
            pc.and_(
                pc.equal(table.column("method"), "execute_pattern"),
                pc.equal(table.column("success"), True),
            ),
            pc.and_(
                pc.equal(pc.fill_null(table.column("cache_tier"), ""), "none"),
                pc.is_valid(table.column("version_seen")),
            ),
        )
    )
    fills: dict[tuple[Any, ...], set[str]] = {}
    for ns, key, ver, inst, deg in zip(
        _col(reads, "namespace"),
        _col(reads, "key"),
        _col(reads, "version_seen"),
        _col(reads, "instance_id"),
        _col(reads, "degraded"),
        strict=True,
    ):
        if not deg:
            fills.setdefault((ns, key, ver), set()).add(inst)
    sizes = [len(v) for v in fills.values()]
    return {
        "key_versions_filled": len(sizes),
        "max_instances_filling_one": max(sizes, default=0),
        "key_versions_filled_twice": sum(1 for s in sizes if s > 1),
    }


def stale_by_tier(table: pa.Table, mode: str = "strict") -> dict[str, int]:
    """Stale reads split by the cache tier that served them (l1, l2, none = computed, null =
    no cache involved), to tell a broken L1 from e.g. a computation joined across a bump."""
    tiers = pc.fill_null(table.column("cache_tier"), "null")
    is_read = pc.equal(table.column("op"), "read")
    out: dict[str, int] = {}
    for tier in sorted(set(tiers.to_pylist())):
        keep = pc.or_(pc.invert(is_read), pc.and_(is_read, pc.equal(tiers, tier)))
        count = check_coherency(table.filter(keep), mode=mode).stale.count
        if count:
            out[str(tier)] = count
    return out


def instance_propagation(run: Any) -> dict[str, dict[str, Any]]:
    """Each instance's own invalidation delays (publish → arrival, ms) from its `/health`."""
    return {
        str(body.get("instance_id")): dict(body.get("cache", {}).get("propagation_ms") or {})
        for body in run.health()
    }


#: Cache counters worth keeping beside the rows (why a key was computed twice, what was stale).
CACHE_COUNTERS = (
    "computes",
    "singleflight_waits",
    "lock_fallbacks",
    "stored_stale",
    "stale_rejections",
    "degraded_computes",
    "coalesced",
    "filled_notes",
)


def cache_counters(run: Any) -> dict[str, dict[str, Any]]:
    """Each instance's cache counters from its `/health` (facts for diagnosing a verdict)."""
    out = {}
    for body in run.health():
        cache = body.get("cache") or {}
        out[str(body.get("instance_id"))] = {k: cache.get(k) for k in CACHE_COUNTERS}
    return out


def count_by(table: pa.Table, column: str) -> dict[str, int]:
    """Rows per value of `column` (null as 'None')."""
    values = [str(v) for v in table.column(column).to_pylist()]
    return {v: values.count(v) for v in sorted(set(values))}
