"""Content-based coherency (Jepsen's set-full): did each read that must include an acknowledged
memory include it — whatever generation the server claimed?

Tracked rows (`topic` set, see `actors.workload`): a `store_memory` whose content is exactly the
topic, and reads recalling that topic in the same namespace (an `execute_pattern` memory query
or `recall_memory`), whose rows list the ids of the memories the answer included. A memory whose
text equals the recall query is the best possible match, so a read of topic T must return every
memory of T that existed when it ran — as long as there were no more of them than the answer
has room for (several writes of one topic tie; then the read must hold at least as many of them
as were acknowledged, up to its size; an empty answer never ties).

Writes: *acknowledged* (success with a `memory_id`); *possibly applied* (timeout, connection
lost, any error whose data does not say `applied: false`): never counted against the server, but
they may occupy the answer; *refused* (`applied: false`): not applied.

Verdict per (acknowledged write w, read r) with r begun definitely after w's ack (driver clock,
beyond both rows' clock uncertainty; closer pairs are counted as ambiguous): r must include w.
A miss is *stale* when w shows up again in a later read, *lost* when it never does. Strict mode
judges every miss; eventual mode only misses on an instance that had already shown w (going
back), and those begun more than `staleness_bound_ms` after the ack when a bound is given.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.history_view import LLM_ROUTES, clock_columns

MAX_EXAMPLES = 20
#: Share of tracked reads whose answer must show its memories (strict mode).
MIN_CHECKABLE_PCT = 95.0


@dataclass
class _Write:
    row: int
    memory_id: str | None
    acked: bool
    begin: int
    end: int
    slack: int
    instance: str | None


@dataclass
class _Read:
    row: int
    seen: list[str]
    begin: int
    end: int
    slack: int
    instance: str | None


@dataclass
class ContentReport:
    """What the content check found, plus its criteria."""

    mode: str
    writes: Counter[str] = field(default_factory=Counter)
    reads: Counter[str] = field(default_factory=Counter)
    pairs: int = 0
    ambiguous_pairs: int = 0
    tied_reads: int = 0
    lagging: int = 0
    stale: int = 0
    lost: int = 0
    by_instance: Counter[str] = field(default_factory=Counter)
    examples: list[dict[str, Any]] = field(default_factory=list)
    criteria: list[Criterion] = field(default_factory=list)

    @property
    def violations(self) -> int:
        return self.stale + self.lost

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "writes": dict(self.writes),
            "reads": dict(self.reads),
            "pairs": self.pairs,
            "ambiguous_pairs": self.ambiguous_pairs,
            "tied_reads": self.tied_reads,
            "lagging": self.lagging,
            "stale": self.stale,
            "lost": self.lost,
            "by_instance": dict(self.by_instance),
            "examples": self.examples,
        }

    def summary_lines(self) -> list[str]:
        w, r = self.writes, self.reads
        return [
            f"content ({self.mode}): {w['acked']} acked writes, {w['possibly_applied']} possibly "
            f"applied, {w['refused']} refused; {r['checkable']} of {sum(r.values())} tracked "
            f"reads checkable {dict(r)}",
            f"  write→read pairs judged: {self.pairs} (+{self.ambiguous_pairs} within clock "
            f"uncertainty, not judged); reads with tied writes: {self.tied_reads}",
            f"  missing by content: {self.stale} stale, {self.lost} lost"
            + (f"; {self.lagging} lagging (eventual)" if self.mode == "eventual" else ""),
        ]


_ROW = "__row"


def _tracked(table: pa.Table, op: str) -> pa.Table:
    """Rows of `op` with a topic and a namespace, with their index in `table` as `__row`."""
    mask = pc.and_(
        pc.equal(table.column("op"), op),
        pc.and_(pc.is_valid(table.column("topic")), pc.is_valid(table.column("namespace"))),
    )
    indexed = table.append_column(_ROW, pa.array(np.arange(table.num_rows), type=pa.int64()))
    return indexed.filter(pc.fill_null(mask, False))


def _writes(table: pa.Table, report: ContentReport) -> dict[tuple[str, str], list[_Write]]:
    rows = _tracked(table, "write")
    begin, end, slack = clock_columns(rows)
    out: dict[tuple[str, str], list[_Write]] = {}
    names = ["namespace", "topic", "success", "memory_id", "applied", "instance_id", _ROW]
    for i, r in enumerate(rows.select(names).to_pylist()):
        if r["success"] and r["memory_id"] is not None:
            status = "acked"
        elif not r["success"] and r["applied"] is False:
            report.writes["refused"] += 1
            continue
        else:
            status = "possibly_applied"
        report.writes[status] += 1
        out.setdefault((r["namespace"], r["topic"]), []).append(
            _Write(
                r[_ROW],
                r["memory_id"],
                status == "acked",
                int(begin[i]),
                int(end[i]),
                int(slack[i]),
                r["instance_id"],
            )
        )
    return out


def _reads(table: pa.Table, report: ContentReport) -> dict[tuple[str, str], list[_Read]]:
    rows = _tracked(table, "read")
    rows = rows.filter(pc.equal(rows.column("success"), True))
    begin, end, slack = clock_columns(rows)
    out: dict[tuple[str, str], list[_Read]] = {}
    names = ["namespace", "topic", "memories_seen", "degraded", "route", "instance_id", _ROW]
    for i, r in enumerate(rows.select(names).to_pylist()):
        if r["degraded"]:
            report.reads["degraded"] += 1
        elif r["memories_seen"] is None:
            report.reads["llm_routed" if r["route"] in LLM_ROUTES else "no_memories"] += 1
        else:
            report.reads["checkable"] += 1
            out.setdefault((r["namespace"], r["topic"]), []).append(
                _Read(
                    r[_ROW],
                    list(r["memories_seen"]),
                    int(begin[i]),
                    int(end[i]),
                    int(slack[i]),
                    r["instance_id"],
                )
            )
    return out


def _first_shown(reads: list[_Read]) -> dict[tuple[str, str | None], int]:
    """(memory id, instance) → latest possible end of the first read there that showed it."""
    out: dict[tuple[str, str | None], int] = {}
    for r in reads:
        for mid in r.seen:
            key = (mid, r.instance)
            out[key] = min(out.get(key, r.end + r.slack), r.end + r.slack)
    return out


def _last_shown(reads: list[_Read]) -> dict[str, int]:
    """memory id → earliest possible begin of the last read (anywhere) that showed it."""
    out: dict[str, int] = {}
    for r in reads:
        for mid in r.seen:
            out[mid] = max(out.get(mid, r.begin - r.slack), r.begin - r.slack)
    return out


def _missing(
    read: _Read, before: list[_Write], writes: list[_Write], known_ids: set[str]
) -> tuple[list[_Write], bool]:
    """Acked writes the read should have shown and did not; and whether writes tied for it."""
    seen = set(read.seen)
    lacking = [w for w in before if w.memory_id not in seen]
    # Writes that may exist by the time the read ended: every one of them ties for a place.
    possible = sum(1 for w in writes if w.begin - w.slack < read.end + read.slack)
    if possible <= len(read.seen) or not read.seen:
        # An empty answer is no tie: the namespace held an acknowledged memory of its topic.
        return lacking, False
    topic_ids = {w.memory_id for w in writes if w.memory_id is not None}
    # Unknown ids may be possibly-applied writes of this topic: give them the benefit.
    have = len(seen & topic_ids) + len(seen - known_ids)
    short = max(0, min(len(before), len(read.seen)) - have)
    return lacking[:short], True


def check_content(
    table: pa.Table,
    *,
    mode: str = "strict",
    staleness_bound_ms: float | None = None,
    min_pairs: int = 20,
    min_reads: int = 20,
    section: str = "4.3",
) -> ContentReport:
    """Run the content check over the tracked rows of `table` and judge its criteria."""
    report = ContentReport(mode=mode)
    writes, reads = _writes(table, report), _reads(table, report)
    known_ids = {w.memory_id for ws in writes.values() for w in ws if w.memory_id is not None}
    bound_ns = None if staleness_bound_ms is None else int(staleness_bound_ms * 1e6)
    for key, group in reads.items():
        group_writes = writes.get(key, [])
        acked = [w for w in group_writes if w.acked]
        first, last = _first_shown(group), _last_shown(group)
        for read in group:
            lo, hi = read.begin - read.slack, read.begin + read.slack
            before = [w for w in acked if w.end + w.slack < lo]
            report.ambiguous_pairs += sum(
                1 for w in acked if not w.end + w.slack < lo and w.end - w.slack < hi
            )
            report.pairs += len(before)
            if not before:
                continue
            lacking, tied = _missing(read, before, group_writes, known_ids)
            report.tied_reads += int(tied)
            for w in lacking:
                _judge(report, key, read, w, first, last, bound_ns)
    report.criteria = _criteria(report, min_pairs, min_reads, section, staleness_bound_ms)
    return report


def _judge(
    report: ContentReport,
    key: tuple[str, str],
    read: _Read,
    write: _Write,
    first: dict[tuple[str, str | None], int],
    last: dict[str, int],
    bound_ns: int | None,
) -> None:
    since_ns = (read.begin - read.slack) - (write.end + write.slack)
    if report.mode == "eventual":
        shown_here = first.get((str(write.memory_id), read.instance))
        went_back = shown_here is not None and shown_here < read.begin - read.slack
        beyond = bound_ns is not None and since_ns > bound_ns
        if not (went_back or beyond):
            report.lagging += 1
            return
    seen_later = last.get(str(write.memory_id), -1) > read.begin + read.slack
    kind = "stale" if seen_later else "lost"
    setattr(report, kind, getattr(report, kind) + 1)
    report.by_instance[str(read.instance)] += 1
    if len(report.examples) < MAX_EXAMPLES:
        report.examples.append(
            {
                "kind": kind,
                "namespace": key[0],
                "topic": key[1],
                "memory_id": write.memory_id,
                "write_row": write.row,
                "read_row": read.row,
                "write_instance": write.instance,
                "read_instance": read.instance,
                "read_showed": read.seen,
                "since_ack_ms": since_ns / 1e6,
            }
        )


def _criteria(
    r: ContentReport, min_pairs: int, min_reads: int, section: str, bound_ms: float | None
) -> list[Criterion]:
    strict = r.mode == "strict"
    critical = strict or bound_ms is not None
    tracked = sum(r.reads.values())
    pct = 100.0 * r.reads["checkable"] / tracked if tracked else None
    what = "reads begun after an acked store that did not include its memory"
    if not strict:
        what += " (eventual: after the instance had shown it"
        what += f", or > {bound_ms:g} ms after the ack)" if bound_ms is not None else ")"
    return [
        checks.equals(
            "no_stale_reads_by_content",
            float(r.violations),
            0,
            evidence=Evidence("acked-write → later-read pairs by content", r.pairs, min_pairs),
            description=what,
            section=section,
            critical=critical,
            metric="stale_reads_by_content",
        ),
        checks.at_least(
            "content_checkable_reads",
            pct,
            MIN_CHECKABLE_PCT,
            evidence=Evidence("tracked reads", tracked, min_reads),
            description="tracked reads whose answer lists the memories it included "
            f"(not: {', '.join(f'{k} {v}' for k, v in r.reads.items() if k != 'checkable') or 'none'})",
            unit="%",
            section=section,
            critical=strict,
        ),
    ]


def tracked_rows(table: pa.Table) -> int:
    """Rows that take part in the content check (a topic is set)."""
    return int(np.sum(pc.is_valid(table.column("topic")).to_numpy(zero_copy_only=False)))
