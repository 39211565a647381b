"""Cache coherency checker over a history table (clocks: see `history_view`).

Version checks, on two dimensions — the namespace generation (`version_seen` against the
`version_written` of the same namespace) and the global generation "*" that shared memories and
`invalidate_cache("*")` bump (`global_version_seen` of every namespace-scoped answer against the
writes of "*"):

* **stale read**: a successful read that began after a write was acknowledged (beyond the clock
  uncertainty of both rows) yet saw an older generation. Reads concurrent with the write may see
  either; pairs within the clock uncertainty are counted as ambiguous, never judged.
* **read-your-writes**: the same, restricted to the reading agent's own writes.
* **monotonic reads**: within a session (and namespace), a read begun after an earlier read
  completed must not see a lower generation than that read did.
* **duplicate fills** (`no_duplicate_keys`): a (namespace, key, generation) computed by more than
  one instance (within the entry's TTL) — the cache duplicated what the cross-instance lock
  should have made one computation. **routing**: one pattern per (namespace, key, generation).
* **propagation**: per-instance delay and staleness window after each write (`propagation`).

Reads that cannot be version-checked are counted by reason (`degraded`, `llm_routed`,
`no_version`) and gated: in strict mode at least 95 % must be checkable. Acknowledged writes
without a generation are gated the same way. Reads after a global bump that do not report the
global generation are *unknown*, not fine. With `content=True` the set-full check of
`analysis.content` runs beside, judging answers by the memories they include.

Every verdict states its evidence (how many comparable pairs it judged) and fails when there were
too few. In `eventual` mode stale/RYW/monotonic findings are reported but not critical unless
`staleness_bound_ms` is given (then violations begun more than that long after what they missed
fail the run).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.content import ContentReport, check_content
from analysis.history_view import (
    Ops,
    acked_writes,
    cached_scoped_read_mask,
    clock_columns,
    constant_key,
    globally_versioned_reads,
    group_keys,
    groups,
    objects,
    read_mask,
    read_reasons,
    select,
    versioned_reads,
    write_mask,
)
from analysis.propagation import InstanceDelays, propagation_delays

MAX_EXAMPLES = 20
MODES = ("strict", "eventual")
GLOBAL_NAMESPACE = "*"
#: Share of reads (and acknowledged writes) that must carry a generation in strict mode.
MIN_CHECKABLE_PCT = 95.0


@dataclass(frozen=True)
class Needs:
    """Evidence minimums of the coherency criteria (experiments size them to their load)."""

    #: reads begun after an acknowledged write of their namespace
    stale_pairs: int = 20
    #: reads begun after the agent's own acknowledged write
    own_writes: int = 5
    #: reads begun after an earlier read of the same session completed
    session_pairs: int = 20
    #: successful reads (the checkable-read gate)
    reads: int = 20
    #: acknowledged writes (the versioned-write gate)
    writes: int = 1
    #: (namespace, key, generation)s computed (the duplicate-fill check)
    fills: int = 10
    #: content check: acknowledged-write → later-read pairs, and tracked reads
    content_pairs: int = 20
    content_reads: int = 20


@dataclass
class Violations:
    """Findings of one kind: counts, per-instance counts and the first examples."""

    kind: str
    count: int = 0
    degraded: int = 0
    #: Probes with something definitely before them to compare with (the evidence).
    comparable: int = 0
    #: Violations only if the clocks are off by less than their measured uncertainty.
    ambiguous: int = 0
    by_instance: Counter[str] = field(default_factory=Counter)
    since_ack_ms: list[float] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and examples."""
        return {
            "count": self.count,
            "degraded": self.degraded,
            "comparable": self.comparable,
            "ambiguous": self.ambiguous,
            "by_instance": dict(self.by_instance),
            "examples": self.examples,
        }


def _missed(
    events: Ops, ev_keys: np.ndarray, probes: Ops, pr_keys: np.ndarray, *, liberal: bool = False
) -> tuple[list[tuple[int, int]], set[int]]:
    """(probe, event) pairs where the probe began after the event's ack but saw a lower version,
    and the probes that began after at least one event (the comparable ones).

    "After" is definite (the probe's earliest possible begin is past the event's latest possible
    ack), or with `liberal` possible (within the clock uncertainty). The event returned is the
    earliest-acked one carrying the highest version acked before the probe began.
    """
    sign = -1 if liberal else 1
    ev_groups = dict(groups(ev_keys))
    found: list[tuple[int, int]] = []
    comparable: set[int] = set()
    for key, p_idx in groups(pr_keys):
        e_idx = ev_groups.get(key)
        if e_idx is None:
            continue
        acks_all = events.end[e_idx] + sign * events.slack[e_idx]
        order = e_idx[np.argsort(acks_all, kind="stable")]
        acks = events.end[order] + sign * events.slack[order]
        vers = events.version[order]
        run_max = np.maximum.accumulate(vers)
        is_new = np.r_[True, vers[1:] > run_max[:-1]]
        arg = np.maximum.accumulate(np.where(is_new, np.arange(vers.size), 0))
        starts = probes.begin[p_idx] - sign * probes.slack[p_idx]
        pos = np.searchsorted(acks, starts, side="left") - 1
        safe = np.maximum(pos, 0)
        comparable.update(int(p_idx[i]) for i in np.flatnonzero(pos >= 0))
        bad = (pos >= 0) & (probes.version[p_idx] < run_max[safe])
        found.extend((int(p_idx[i]), int(order[arg[safe[i]]])) for i in np.flatnonzero(bad))
    found.sort(key=lambda pe: (int(probes.begin[pe[0]]), int(probes.row[pe[0]])))
    return found, comparable


def _collect(
    out: Violations,
    dimension: str,
    events: Ops,
    ev_keys: np.ndarray,
    probes: Ops,
    pr_keys: np.ndarray,
) -> None:
    """Add one dimension's findings (definite ones judged, ambiguous ones counted) to `out`."""
    pairs, comparable = _missed(events, ev_keys, probes, pr_keys)
    loose, _ = _missed(events, ev_keys, probes, pr_keys, liberal=True)
    definite = {p for p, _ in pairs}
    out.ambiguous += len({p for p, _ in loose} - definite)
    out.comparable += sum(1 for p in comparable if not probes.degraded[p])
    for p, e in pairs:
        if probes.degraded[p]:
            out.degraded += 1
            continue
        since_ack = (int(probes.begin[p]) - int(events.end[e])) / 1e6
        out.count += 1
        out.by_instance[str(probes["instance_id"][p])] += 1
        out.since_ack_ms.append(since_ack)
        if len(out.examples) < MAX_EXAMPLES:
            out.examples.append(
                {
                    "dimension": dimension,
                    "read": probes.record(p),
                    "missed": events.record(e),
                    "namespace": probes["namespace"][p],
                    "instance_id": probes["instance_id"][p],
                    "staleness": int(events.version[e] - probes.version[p]),
                    "since_ack_ms": since_ack,
                }
            )


def routing_conflicts(table: pa.Table) -> tuple[list[dict[str, Any]], int]:
    """(namespace, key, generation) groups whose successful reads named more than one pattern,
    and how many groups were read more than once (the evidence)."""
    reads = versioned_reads(table)
    found, repeated = [], 0
    for (ns, key, version), idx in groups(_with_version(reads, "namespace", "key")):
        repeated += int(idx.size > 1)
        names = sorted({n for n in reads["pattern_name"][idx].tolist() if n is not None})
        if len(names) > 1:
            found.append({"namespace": ns, "key": key, "version": version, "patterns": names})
    return found, repeated


def duplicate_fills(
    table: pa.Table, ttl_s: Mapping[str, float] | None = None
) -> tuple[list[dict[str, Any]], int]:
    """(namespace, key, generation)s computed by more than one instance, and how many were
    computed at all.

    A computed answer is a successful execute_pattern read with cache tier "none", a generation
    and not degraded (callers that joined a flight in the same instance look alike, so fills
    are counted per instance). The generation is the namespace's and, when reported, the global
    one. Two fills are not duplicates when one began after the other's entry expired (`ttl_s`
    per pattern), nor — global generation not reported — when a global bump was acknowledged
    between them: they may belong to two global generations, two entries.
    """
    mask = pc.and_(
        pc.and_(read_mask(table), pc.equal(table.column("method"), "execute_pattern")),
        pc.and_(
            pc.equal(pc.fill_null(table.column("cache_tier"), ""), "none"),
            pc.is_valid(table.column("version_seen")),
        ),
    )
    fills = select(
        table,
        pc.and_(mask, pc.invert(pc.fill_null(table.column("degraded"), False))),
        "version_seen",
    )
    global_seen = table.column("global_version_seen").take(pa.array(fills.row)).to_pylist()
    bumps = _global_bump_acks(table)
    keys = _with_version(fills, "namespace", "key").tolist()
    keys = [None if k is None else (*k, g) for k, g in zip(keys, global_seen, strict=True)]
    found: list[dict[str, Any]] = []
    computed = 0
    for (ns, key, version, global_version), idx in groups(objects(keys)):
        computed += 1
        idx = idx[np.argsort(fills.begin[idx], kind="stable")]
        pattern = fills["pattern_name"][idx[0]]
        ttl_ns = None if not ttl_s or pattern not in ttl_s else int(ttl_s[pattern] * 1e9)
        first, epoch_end, instances = None, None, set()
        for i in idx.tolist():
            expired = ttl_ns is not None and epoch_end is not None and fills.begin[i] > epoch_end
            if expired or (
                first is not None
                and global_version is None
                and _bump_between(bumps, fills.begin[first] - fills.slack[first],
                                  fills.end[i] + fills.slack[i])
            ):  # fmt: skip
                first, epoch_end, instances = None, None, set()
            instances.add(fills["instance_id"][i])
            if first is None:
                first, epoch_end = i, int(fills.end[i]) + (ttl_ns or 0)
            if len(instances) > 1:
                found.append(
                    {
                        "namespace": ns,
                        "key": key,
                        "version": version,
                        "global_version": global_version,
                        "instances": sorted(map(str, instances)),
                        "rows": [int(fills.row[j]) for j in idx.tolist()],
                    }
                )
                break
    return found, computed


def _global_bump_acks(table: pa.Table) -> np.ndarray:
    """Driver-clock ack times (± their uncertainty, both ends) of acknowledged global bumps."""
    bumps = select(
        table,
        pc.and_(write_mask(table), pc.equal(table.column("namespace"), GLOBAL_NAMESPACE)),
        None,
    )
    return np.sort(np.r_[bumps.end - bumps.slack, bumps.end + bumps.slack])


def _bump_between(acks: np.ndarray, lo: int, hi: int) -> bool:
    return bool(np.searchsorted(acks, hi, side="right") > np.searchsorted(acks, lo, side="left"))


def _with_version(ops: Ops, *names: str) -> np.ndarray:
    keys = group_keys(ops, *names).tolist()
    out = np.empty(len(keys), dtype=object)
    out[:] = [None if k is None else (*k, int(v)) for k, v in zip(keys, ops.version, strict=True)]
    return out


@dataclass
class CoherencyReport:
    """Everything the checker found, plus the named criteria it implies."""

    mode: str
    reads_checked: int
    writes_checked: int
    stale: Violations
    read_your_writes: Violations
    monotonic: Violations
    routing: list[dict[str, Any]]
    duplicate_fills: list[dict[str, Any]]
    propagation: dict[str, InstanceDelays]
    read_reasons: Counter[str]
    writes_unversioned: int
    global_unknown: int
    clock: dict[str, Any]
    content: ContentReport | None = None
    evidence: dict[str, int] = field(default_factory=dict)
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """No critical coherency criterion failed."""
        return checks.tally(self.criteria).ok

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (first examples only)."""
        return {
            "mode": self.mode,
            "reads_checked": self.reads_checked,
            "writes_checked": self.writes_checked,
            "read_reasons": dict(self.read_reasons),
            "writes_unversioned": self.writes_unversioned,
            "global_unknown": self.global_unknown,
            "clock": self.clock,
            "evidence": self.evidence,
            "stale_reads": self.stale.to_dict(),
            "read_your_writes": self.read_your_writes.to_dict(),
            "monotonic_reads": self.monotonic.to_dict(),
            "routing_conflicts": {
                "count": len(self.routing),
                "examples": self.routing[:MAX_EXAMPLES],
            },
            "duplicate_fills": {
                "count": len(self.duplicate_fills),
                "examples": self.duplicate_fills[:MAX_EXAMPLES],
            },
            "propagation": {inst: d.stats() for inst, d in sorted(self.propagation.items())},
            "content": None if self.content is None else self.content.to_dict(),
            "criteria": [c.to_dict() for c in self.criteria],
        }

    def summary_lines(self) -> list[str]:
        """Short human-readable summary (recheck and terminal output)."""
        lines = [
            f"coherency ({self.mode}): {self.reads_checked} reads, {self.writes_checked} writes; "
            f"reads by reason {dict(self.read_reasons)}; {self.writes_unversioned} acked "
            f"writes without a generation; {self.global_unknown} reads with the global "
            "generation unknown",
            f"  clock: uncertainty up to {self.clock['max_uncertainty_ms']:.3f} ms; "
            f"ambiguous (not judged): {self.stale.ambiguous} stale, "
            f"{self.read_your_writes.ambiguous} read-your-writes, "
            f"{self.monotonic.ambiguous} monotonic",
            f"  stale reads: {self.stale.count} (+{self.stale.degraded} degraded) "
            f"of {self.stale.comparable} comparable",
            f"  read-your-writes violations: {self.read_your_writes.count} "
            f"of {self.read_your_writes.comparable}",
            f"  monotonic-read violations: {self.monotonic.count} of {self.monotonic.comparable}",
            f"  duplicate fills: {len(self.duplicate_fills)} of "
            f"{self.evidence.get('fills', 0)} key-generations computed; routing conflicts: "
            f"{len(self.routing)}",
        ]
        for inst, delays in sorted(self.propagation.items()):
            d, w = delays.stats()["delay_ms"], delays.stats()["staleness_window_ms"]
            lines.append(
                f"  propagation {inst}: n={d['count']} p50={_ms(d['p50'])} p95={_ms(d['p95'])} "
                f"max={_ms(d['max'])}; staleness window p95={_ms(w['p95'])} max={_ms(w['max'])}"
            )
        if self.content is not None:
            lines.extend(self.content.summary_lines())
        lines.extend(f"  {c.message()}" for c in self.criteria)
        return lines


def _ms(value: object) -> str:
    return "n/a" if value is None else f"{value:.2f}ms"


def _clock(table: pa.Table) -> dict[str, Any]:
    _, _, slack = clock_columns(table)
    known = pc.is_valid(table.column("clock_uncertainty_ns")).to_numpy(zero_copy_only=False)
    return {
        "max_uncertainty_ms": float(slack.max()) / 1e6 if slack.size else 0.0,
        "rows_without_offset": int(np.sum(~known)) if known.size else 0,
        "rule": "a read began after an ack only if its earliest possible begin is later than "
        "the ack's latest possible time (each ± its row's clock uncertainty)",
    }


def _global_unknown(table: pa.Table, global_writes: Ops) -> int:
    """Namespace-scoped reads begun after an acked global bump that do not report the global
    generation (an older server): the global dimension of those reads is unknown."""
    if len(global_writes) == 0:
        return 0
    mask = pc.and_(
        cached_scoped_read_mask(table, GLOBAL_NAMESPACE),
        pc.is_null(table.column("global_version_seen")),
    )
    reads = select(table, mask, None)
    first_ack = int(np.min(global_writes.end + global_writes.slack))
    return int(np.sum(reads.begin - reads.slack > first_ack))


def check_coherency(
    table: pa.Table,
    *,
    mode: str = "strict",
    staleness_bound_ms: float | None = None,
    max_propagation_p95_ms: float | None = None,
    section: str = "4.3",
    needs: Needs | None = None,
    content: bool = False,
    fill_ttl_s: Mapping[str, float] | None = None,
    expect_global: bool = False,
) -> CoherencyReport:
    """Run every coherency check over `table` and judge the plan's coherency criteria.

    `content` adds the content (set-full) check; `expect_global` demands the global-generation
    check even when the run made no global bump (then it fails for lack of evidence).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    needs = needs or Needs()
    writes, reads = acked_writes(table), versioned_reads(table)
    is_global = pc.equal(table.column("namespace"), GLOBAL_NAMESPACE)
    global_writes = select(
        table,
        pc.and_(
            pc.and_(write_mask(table), is_global), pc.is_valid(table.column("version_written"))
        ),
        "version_written",
    )
    g_reads = globally_versioned_reads(table, GLOBAL_NAMESPACE)
    stale, ryw, mono = Violations("stale"), Violations("read_your_writes"), Violations("monotonic")
    _collect(
        stale,
        "namespace",
        writes,
        group_keys(writes, "namespace"),
        reads,
        group_keys(reads, "namespace"),
    )
    _collect(
        stale,
        "global",
        global_writes,
        constant_key(global_writes, GLOBAL_NAMESPACE),
        g_reads,
        constant_key(g_reads, GLOBAL_NAMESPACE),
    )
    _collect(
        ryw,
        "namespace",
        writes,
        group_keys(writes, "agent_id", "namespace"),
        reads,
        group_keys(reads, "agent_id", "namespace"),
    )
    _collect(
        ryw,
        "global",
        global_writes,
        group_keys(global_writes, "agent_id"),
        g_reads,
        group_keys(g_reads, "agent_id"),
    )
    sess = group_keys(reads, "session_id", "namespace")
    _collect(mono, "namespace", reads, sess, reads, sess)
    g_sess = group_keys(g_reads, "session_id")
    _collect(mono, "global", g_reads, g_sess, g_reads, g_sess)
    routing, repeated = routing_conflicts(table)
    fills, computed = duplicate_fills(table, fill_ttl_s)
    unversioned = table.filter(
        pc.and_(write_mask(table), pc.is_null(table.column("version_written")))
    ).num_rows
    report = CoherencyReport(
        mode=mode,
        reads_checked=len(reads),
        writes_checked=len(writes),
        stale=stale,
        read_your_writes=ryw,
        monotonic=mono,
        routing=routing,
        duplicate_fills=fills,
        propagation=propagation_delays(writes, reads),
        read_reasons=read_reasons(table),
        writes_unversioned=unversioned,
        global_unknown=_global_unknown(table, global_writes),
        clock=_clock(table),
        evidence={
            "global_writes": len(global_writes),
            "repeated_key_generations": repeated,
            "fills": computed,
        },
    )
    if content:
        report.content = check_content(
            table,
            mode=mode,
            staleness_bound_ms=staleness_bound_ms,
            min_pairs=needs.content_pairs,
            min_reads=needs.content_reads,
            section=section,
        )
    report.criteria = _criteria(
        report, staleness_bound_ms, max_propagation_p95_ms, section, needs, expect_global
    )
    if report.content is not None:
        report.criteria += report.content.criteria
    return report


def _criteria(
    r: CoherencyReport,
    bound_ms: float | None,
    max_p95_ms: float | None,
    section: str,
    needs: Needs,
    expect_global: bool,
) -> list[Criterion]:
    # strict: every violation counts and is critical. eventual + bound: only violations that
    # began more than bound_ms after what they missed count (critical). eventual, no bound:
    # everything is reported but nothing is critical (the mode promises no bound).
    strict = r.mode == "strict"
    bounded = not strict and bound_ms is not None
    critical = strict or bounded
    suffix = "_beyond_bound" if bounded else ""
    extra = f" (only those begun > {bound_ms:g} ms after)" if bounded else ""

    def count(v: Violations) -> float:
        return float(sum(1 for s in v.since_ack_ms if s > bound_ms) if bounded else v.count)

    reads_total = sum(r.read_reasons.values())
    writes_total = r.writes_checked + r.writes_unversioned
    not_checkable = ", ".join(f"{k} {v}" for k, v in r.read_reasons.items() if k != "checkable")
    out = [
        checks.at_least(
            "checkable_reads",
            _pct(r.read_reasons["checkable"], reads_total),
            MIN_CHECKABLE_PCT,
            evidence=Evidence("successful reads", reads_total, needs.reads),
            description="reads that report the generation they came from (not: "
            f"{not_checkable or 'none'})",
            unit="%",
            section=section,
            critical=strict,
        ),
        checks.at_least(
            "versioned_writes",
            _pct(r.writes_checked, writes_total),
            MIN_CHECKABLE_PCT,
            evidence=Evidence("acknowledged writes", writes_total, needs.writes),
            description="acknowledged writes that report the generation they produced",
            unit="%",
            section=section,
            critical=strict,
        ),
        checks.equals(
            f"no_stale_reads{suffix}",
            count(r.stale),
            0,
            evidence=Evidence(
                "reads begun after an acked write of their namespace",
                r.stale.comparable,
                needs.stale_pairs,
            ),
            description="reads begun after an acked write that saw an older generation "
            "(namespace or global)" + extra,
            section=section,
            critical=critical,
            metric="stale_reads",
        ),
        checks.equals(
            f"read_your_writes{suffix}",
            count(r.read_your_writes),
            0,
            evidence=Evidence(
                "reads begun after the agent's own acked write",
                r.read_your_writes.comparable,
                needs.own_writes,
            ),
            description="agent reads after its own acked write see it" + extra,
            section=section,
            critical=critical,
        ),
        checks.equals(
            f"monotonic_reads{suffix}",
            count(r.monotonic),
            0,
            evidence=Evidence(
                "reads begun after an earlier read of their session completed",
                r.monotonic.comparable,
                needs.session_pairs,
            ),
            description="per-session generations never go back" + extra,
            section=section,
            critical=critical,
        ),
        checks.equals(
            "no_duplicate_keys",
            float(len(r.duplicate_fills)),
            0,
            evidence=Evidence("key-generations computed", r.evidence["fills"], needs.fills),
            description="(namespace, key, generation)s computed by more than one instance "
            "within the entry's TTL (the cache should compute each once)",
            section=section,
        ),
        checks.equals(
            "consistent_routing",
            float(len(r.routing)),
            0,
            evidence=Evidence(
                "key-generations read more than once", r.evidence["repeated_key_generations"], 1
            ),
            description="one pattern per (namespace, key, generation)",
            section=section,
        ),
    ]
    if expect_global or r.evidence["global_writes"]:
        out.append(
            checks.equals(
                "global_generation_known",
                float(r.global_unknown),
                0,
                evidence=Evidence("acknowledged global bumps", r.evidence["global_writes"], 1),
                description="namespace-scoped reads begun after a global bump that do not "
                "report the global generation they depended on (absent = unknown, not fine)",
                section=section,
                critical=strict,
            )
        )
    if max_p95_ms is not None:
        p95s = [d.stats()["delay_ms"]["p95"] for d in r.propagation.values()]
        worst = max((p for p in p95s if p is not None), default=None)
        samples = sum(len(d.delays_ms) for d in r.propagation.values())
        out.append(
            checks.at_most(
                "propagation_p95",
                worst,
                max_p95_ms,
                evidence=Evidence("propagation samples", samples, 20),
                unit="ms",
                section="4.1",
                description="worst per-instance p95 invalidation propagation delay",
            )
        )
    return out


def _pct(part: int, whole: int) -> float | None:
    return 100.0 * part / whole if whole else None
