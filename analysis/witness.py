"""Explained counterexamples: for each failed coherency finding, the smallest history that shows
it — one acknowledged write, where its invalidation was observed on each instance, and the read
that missed it — as text for summary.md and as markers in timeline.html.

A witness is built from the checker's own examples (`CoherencyReport.stale.examples` by
generation, `ContentReport.examples` by content), so it explains exactly what was counted. Times
are on the driver's clock (each row's measured clock offset removed), in seconds from the first
request of the run. "Invalidation observed" on an instance is the first read there, of the same
namespace, that began after the write's ack and saw its generation or newer (the arrival of the
bump as the instance's answers show it; the service does not record message arrival itself).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from typing import Any

import pyarrow as pa

from analysis.coherency import CoherencyReport
from analysis.history_view import clock_columns

MAX_WITNESSES = 5


@dataclass
class Witness:
    """One explained counterexample."""

    number: int
    kind: str  # "stale by generation", "stale by content", "lost by content"
    namespace: str
    write: dict[str, Any]
    read: dict[str, Any]
    arrivals: dict[str, str] = field(default_factory=dict)
    faults: list[str] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return f"witness-{self.number}"

    def lines(self) -> list[str]:
        w, r = self.write, self.read
        arrivals = "; ".join(f"{k}: {v}" for k, v in sorted(self.arrivals.items())) or "n/a"
        return [
            f"**Witness {self.number}** ({self.kind}, namespace `{self.namespace}`; "
            f"[timeline](timeline.html#{self.anchor}))",
            f"- write: `{w['method']}` by agent `{w['agent_id']}` via `{w['instance']}`, "
            f"acknowledged at t={w['ack_s']:.3f} s, generation {w['generation']}"
            + (f", memory `{w['memory_id']}`" if w.get("memory_id") else "")
            + f" (row {w['row']})",
            f"- invalidation observed per instance: {arrivals}",
            f"- stale read: `{r['method']}` by agent `{r['agent_id']}` via `{r['instance']}`, "
            f"tier {r['tier']}, generation {r['generation']}, began t={r['begin_s']:.3f} s "
            f"({r['since_ack_ms']:.0f} ms after the ack), answered t={r['end_s']:.3f} s, "
            f"degraded={r['degraded']}" + (f", showed {r['showed']}" if "showed" in r else ""),
            f"- faults active at the read: {', '.join(self.faults) or 'none'}",
        ]


def _short(instance: Any, run_prefix: str) -> str:
    text = str(instance)
    return text[len(run_prefix) :] if run_prefix and text.startswith(run_prefix) else text


class _History:
    """Driver-clock columns of the checked table, for building witnesses."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.begin, self.end, _ = clock_columns(table)
        self.origin = int(self.begin.min()) if table.num_rows else 0
        self.cols = {
            name: table.column(name).to_pylist()
            for name in (
                "agent_id",
                "instance_id",
                "method",
                "namespace",
                "version_seen",
                "version_written",
                "cache_tier",
                "degraded",
                "memory_id",
                "success",
                "op",
                "run_id",
            )
        }
        run_ids = self.cols["run_id"]
        self.prefix = f"{run_ids[0]}-" if run_ids else ""

    def s(self, ns: int) -> float:
        return (ns - self.origin) / 1e9

    def row(self, i: int) -> dict[str, Any]:
        c = self.cols
        return {
            "row": i,
            "method": c["method"][i],
            "agent_id": _short(c["agent_id"][i], self.prefix),
            "instance": _short(c["instance_id"][i], self.prefix),
            "tier": c["cache_tier"][i] or "compute",
            "degraded": bool(c["degraded"][i]),
            "memory_id": c["memory_id"][i],
            "begin_s": self.s(int(self.begin[i])),
            "end_s": self.s(int(self.end[i])),
            "ack_s": self.s(int(self.end[i])),
        }

    def arrivals(self, namespace: str, generation: int | None, after_ns: int) -> dict[str, str]:
        """Per instance: when a read of `namespace` first showed `generation` (or newer)."""
        c = self.cols
        out: dict[str, str] = {}
        instances = sorted({str(i) for i in c["instance_id"] if i is not None})
        if generation is None:
            return {_short(i, self.prefix): "generation unknown" for i in instances}
        for inst in instances:
            best: int | None = None
            for i in range(self.table.num_rows):
                if (
                    c["instance_id"][i] == inst
                    and c["namespace"][i] == namespace
                    and c["op"][i] == "read"
                    and c["success"][i]
                    and c["version_seen"][i] is not None
                    and c["version_seen"][i] >= generation
                    and self.begin[i] >= after_ns
                    and (best is None or self.begin[i] < self.begin[best])
                ):
                    best = i
            label = _short(inst, self.prefix)
            if best is None:
                out[label] = "never observed"
            else:
                delay = (int(self.begin[best]) - after_ns) / 1e6
                out[label] = (
                    f"t={self.s(int(self.begin[best])):.3f} s (+{delay:.0f} ms, row {best})"
                )
        return out


def _active_faults(faults: list[dict[str, Any]] | None, at_ns: int) -> list[str]:
    out = []
    for f in faults or []:
        lo, hi = f.get("applied_ns"), f.get("healed_ns")
        if lo is not None and lo <= at_ns and (hi is None or at_ns <= hi):
            out.append(str(f["fault"]))
    return out


def witnesses(
    table: pa.Table,
    report: CoherencyReport | None,
    faults: list[dict[str, Any]] | None = None,
    limit: int = MAX_WITNESSES,
) -> list[Witness]:
    """Up to `limit` witnesses, one per distinct (write, read instance), generation findings
    first, then content findings, each kind longest-after-the-ack first (so in eventual mode
    the ones past the staleness bound lead); `table` is the table the checker was given."""
    if report is None or table.num_rows == 0:
        return []
    history = _History(table)
    found: list[Witness] = []
    seen: set[tuple[int, str]] = set()

    def add(
        kind: str, namespace: str, write_row: int, read_row: int, extra: dict[str, Any]
    ) -> None:
        if len(found) >= limit:
            return
        read = history.row(read_row)
        key = (write_row, read["instance"])
        if key in seen:
            return
        seen.add(key)
        write = history.row(write_row)
        generation = history.cols["version_written"][write_row]
        write["generation"] = generation if generation is not None else "none"
        read["generation"] = history.cols["version_seen"][read_row]
        read["since_ack_ms"] = (int(history.begin[read_row]) - int(history.end[write_row])) / 1e6
        read.update(extra)
        found.append(
            Witness(
                len(found) + 1,
                kind,
                namespace,
                write,
                read,
                history.arrivals(namespace, generation, int(history.end[write_row])),
                _active_faults(faults, int(history.begin[read_row])),
            )
        )

    # Longest after the ack first: beyond any clock uncertainty or eventual-mode bound.
    for ex in sorted(report.stale.examples, key=lambda e: -float(e["since_ack_ms"])):
        add(
            f"stale by generation ({ex.get('dimension', 'namespace')})",
            str(ex["namespace"]),
            int(ex["missed"]["row"]),
            int(ex["read"]["row"]),
            {},
        )
    if report.content is not None:
        for ex in sorted(report.content.examples, key=lambda e: -float(e["since_ack_ms"])):
            add(
                f"{ex['kind']} by content",
                str(ex["namespace"]),
                int(ex["write_row"]),
                int(ex["read_row"]),
                {"showed": f"{len(ex.get('read_showed') or [])} memories, not {ex['memory_id']}"},
            )
    return found


def witness_markdown(found: list[Witness]) -> str:
    """The summary.md section ("" when there is nothing to explain)."""
    if not found:
        return ""
    parts = ["", "## Witnesses (smallest counterexamples)", ""]
    for w in found:
        parts += [*w.lines(), ""]
    return "\n".join(parts)


def witness_points(found: list[Witness]) -> list[dict[str, Any]]:
    """Plain data for the timeline: write and read positions of each witness."""
    return [
        {
            "number": w.number,
            "anchor": w.anchor,
            "write": (w.write["ack_s"], w.write["instance"]),
            "read": (w.read["begin_s"], w.read["instance"]),
            "text": "<br>".join(escape(line) for line in w.lines()),
        }
        for w in found
    ]


def stale_rows(report: CoherencyReport | None) -> set[int]:
    """Rows the checker's examples name as stale reads (generation or content)."""
    if report is None:
        return set()
    rows = {int(ex["read"]["row"]) for ex in report.stale.examples}
    if report.content is not None:
        rows |= {int(ex["read_row"]) for ex in report.content.examples}
    return rows
