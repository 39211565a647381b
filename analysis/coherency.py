"""Cache coherency checker over a history table (see `history_view` for the clock assumption).

* **stale read**: a successful read of namespace N that began (`t_send_ns`) after a successful
  write/invalidate of N was acknowledged (`t_recv_ns`) with generation g, yet saw a generation
  < g. Reads concurrent with the write (begun before its ack) may legitimately see either.
* **read-your-writes**: the same, restricted to the reading agent's own writes.
* **monotonic reads**: within a session and namespace, a read that began after an earlier read
  completed must not see a lower generation than that read did.
* **duplicate keys**: all successful reads of one (namespace, key, generation) name one pattern.
* **propagation**: per-instance delay and staleness window after each write (`propagation`).

Reads marked `degraded` (served while Redis was down) are counted separately and excluded from the
criteria: the design allows them to be stale. In `eventual` mode stale/RYW/monotonic findings are
reported but not critical unless `staleness_bound_ms` is given (then stale reads begun more than
that long after the ack fail the run).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from analysis import checks
from analysis.checks import Criterion
from analysis.history_view import Ops, acked_writes, group_keys, groups, objects, versioned_reads
from analysis.propagation import InstanceDelays, propagation_delays

MAX_EXAMPLES = 20
MODES = ("strict", "eventual")


@dataclass
class Violations:
    """Findings of one kind: counts, per-instance counts and the first examples."""

    kind: str
    count: int = 0
    degraded: int = 0
    by_instance: Counter[str] = field(default_factory=Counter)
    since_ack_ms: list[float] = field(default_factory=list)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and examples."""
        return {
            "count": self.count,
            "degraded": self.degraded,
            "by_instance": dict(self.by_instance),
            "examples": self.examples,
        }


def _missed(events: Ops, ev_keys: np.ndarray, probes: Ops, pr_keys: np.ndarray) -> list[tuple]:
    """(probe, event) pairs: the probe began after the event's ack but saw a lower version.

    The event returned is the earliest-acked one carrying the highest version acked before the
    probe began — the write (or read) the probe most plainly missed.
    """
    ev_groups = dict(groups(ev_keys))
    found: list[tuple[int, int]] = []
    for key, p_idx in groups(pr_keys):
        e_idx = ev_groups.get(key)
        if e_idx is None:
            continue
        order = e_idx[np.argsort(events["t_recv_ns"][e_idx], kind="stable")]
        acks, vers = events["t_recv_ns"][order], events.version[order]
        run_max = np.maximum.accumulate(vers)
        is_new = np.r_[True, vers[1:] > run_max[:-1]]
        arg = np.maximum.accumulate(np.where(is_new, np.arange(vers.size), 0))
        pos = np.searchsorted(acks, probes["t_send_ns"][p_idx], side="left") - 1
        safe = np.maximum(pos, 0)
        bad = (pos >= 0) & (probes.version[p_idx] < run_max[safe])
        found.extend((int(p_idx[i]), int(order[arg[safe[i]]])) for i in np.flatnonzero(bad))
    found.sort(key=lambda pe: (int(probes["t_send_ns"][pe[0]]), int(probes.row[pe[0]])))
    return found


def _collect(kind: str, pairs: list[tuple], probes: Ops, events: Ops) -> Violations:
    out = Violations(kind)
    for p, e in pairs:
        if probes.degraded[p]:
            out.degraded += 1
            continue
        since_ack = (int(probes["t_send_ns"][p]) - int(events["t_recv_ns"][e])) / 1e6
        out.count += 1
        out.by_instance[str(probes["instance_id"][p])] += 1
        out.since_ack_ms.append(since_ack)
        if len(out.examples) < MAX_EXAMPLES:
            out.examples.append(
                {
                    "read": probes.record(p),
                    "missed": events.record(e),
                    "namespace": probes["namespace"][p],
                    "instance_id": probes["instance_id"][p],
                    "staleness": int(events.version[e] - probes.version[p]),
                    "since_ack_ms": since_ack,
                }
            )
    return out


def duplicate_keys(table: pa.Table) -> list[dict[str, Any]]:
    """(namespace, key, generation) groups whose successful reads named more than one pattern."""
    reads = versioned_reads(table)
    found = []
    for (ns, key, version), idx in groups(_with_version(reads, "namespace", "key")):
        names = sorted({n for n in reads["pattern_name"][idx].tolist() if n is not None})
        if len(names) > 1:
            found.append({"namespace": ns, "key": key, "version": version, "patterns": names})
    return found


def _with_version(ops: Ops, *names: str) -> np.ndarray:
    keys = group_keys(ops, *names).tolist()
    return objects(
        [None if k is None else (*k, int(v)) for k, v in zip(keys, ops.version, strict=True)]
    )


@dataclass
class CoherencyReport:
    """Everything the checker found, plus the named criteria it implies."""

    mode: str
    reads_checked: int
    writes_checked: int
    stale: Violations
    read_your_writes: Violations
    monotonic: Violations
    duplicates: list[dict[str, Any]]
    propagation: dict[str, InstanceDelays]
    criteria: list[Criterion]

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
            "stale_reads": self.stale.to_dict(),
            "read_your_writes": self.read_your_writes.to_dict(),
            "monotonic_reads": self.monotonic.to_dict(),
            "duplicate_keys": {
                "count": len(self.duplicates),
                "examples": self.duplicates[:MAX_EXAMPLES],
            },
            "propagation": {inst: d.stats() for inst, d in sorted(self.propagation.items())},
            "criteria": [c.to_dict() for c in self.criteria],
        }

    def summary_lines(self) -> list[str]:
        """Short human-readable summary (recheck and terminal output)."""
        lines = [
            f"coherency ({self.mode}): {self.reads_checked} reads, {self.writes_checked} writes",
            f"  stale reads: {self.stale.count} (+{self.stale.degraded} degraded)",
            f"  read-your-writes violations: {self.read_your_writes.count}",
            f"  monotonic-read violations: {self.monotonic.count}",
            f"  duplicate keys: {len(self.duplicates)}",
        ]
        for inst, delays in sorted(self.propagation.items()):
            d, w = delays.stats()["delay_ms"], delays.stats()["staleness_window_ms"]
            lines.append(
                f"  propagation {inst}: n={d['count']} p50={_ms(d['p50'])} p95={_ms(d['p95'])} "
                f"max={_ms(d['max'])}; staleness window p95={_ms(w['p95'])} max={_ms(w['max'])}"
            )
        lines.extend(f"  {c.message()}" for c in self.criteria)
        return lines


def _ms(value: object) -> str:
    return "n/a" if value is None else f"{value:.2f}ms"


def check_coherency(
    table: pa.Table,
    *,
    mode: str = "strict",
    staleness_bound_ms: float | None = None,
    max_propagation_p95_ms: float | None = None,
    section: str = "4.3",
) -> CoherencyReport:
    """Run every coherency check over `table` and judge the plan's coherency criteria."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    writes, reads = acked_writes(table), versioned_reads(table)
    ns_w, ns_r = group_keys(writes, "namespace"), group_keys(reads, "namespace")
    stale = _collect("stale", _missed(writes, ns_w, reads, ns_r), reads, writes)
    ryw_w, ryw_r = (
        group_keys(writes, "agent_id", "namespace"),
        group_keys(reads, "agent_id", "namespace"),
    )
    ryw = _collect("read_your_writes", _missed(writes, ryw_w, reads, ryw_r), reads, writes)
    sess = group_keys(reads, "session_id", "namespace")
    mono = _collect("monotonic", _missed(reads, sess, reads, sess), reads, reads)
    report = CoherencyReport(
        mode=mode,
        reads_checked=len(reads),
        writes_checked=len(writes),
        stale=stale,
        read_your_writes=ryw,
        monotonic=mono,
        duplicates=duplicate_keys(table),
        propagation=propagation_delays(writes, reads),
        criteria=[],
    )
    report.criteria = _criteria(report, staleness_bound_ms, max_propagation_p95_ms, section)
    return report


def _criteria(
    r: CoherencyReport, bound_ms: float | None, max_p95_ms: float | None, section: str
) -> list[Criterion]:
    # strict: every violation counts and is critical. eventual + bound: only violations that
    # began more than bound_ms after what they missed count (critical). eventual, no bound:
    # everything is reported but nothing is critical (the mode promises no bound).
    strict = r.mode == "strict"
    bounded = not strict and bound_ms is not None
    critical = strict or bounded
    suffix = "_beyond_bound" if bounded else ""
    extra = f" (only those begun > {bound_ms:g} ms after)" if bounded else ""

    def count(v: Violations) -> int:
        return sum(1 for s in v.since_ack_ms if s > bound_ms) if bounded else v.count

    out: list[Criterion] = []
    if r.reads_checked == 0 or r.writes_checked == 0:
        reason = "no versioned reads and acknowledged writes to compare"
        out.append(checks.skipped("no_stale_reads", reason, section=section))
    else:
        text = "reads begun after an acked write that saw an older generation" + extra
        out.append(
            _zero(f"no_stale_reads{suffix}", count(r.stale), text, section, critical, "stale_reads")
        )
    if r.reads_checked:
        ryw_text = "agent reads after its own acked write see it" + extra
        mono_text = "per-session generations never go back" + extra
        dup_text = "one pattern_name per (namespace, key, generation)"
        out += [
            _zero(
                f"read_your_writes{suffix}",
                count(r.read_your_writes),
                ryw_text,
                section,
                critical,
                None,
            ),
            _zero(
                f"monotonic_reads{suffix}", count(r.monotonic), mono_text, section, critical, None
            ),
            _zero("no_duplicate_keys", len(r.duplicates), dup_text, section, True, None),
        ]
    if max_p95_ms is not None:
        p95s = [d.stats()["delay_ms"]["p95"] for d in r.propagation.values()]
        worst = max((p for p in p95s if p is not None), default=None)
        text = "worst per-instance p95 invalidation propagation delay"
        out.append(
            checks.at_most(
                "propagation_p95", worst, max_p95_ms, unit="ms", section="4.1", description=text
            )
        )
    return out


def _zero(
    name: str, count: float, text: str, section: str, critical: bool, metric: str | None
) -> Criterion:
    return checks.equals(
        name, float(count), 0, description=text, section=section, critical=critical, metric=metric
    )
