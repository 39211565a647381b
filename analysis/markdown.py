"""summary.md: the run's verdict, criteria table, key metrics and coherency findings."""

from __future__ import annotations

from typing import Any

from analysis.checks import Criterion, tally
from analysis.coherency import CoherencyReport
from analysis.generator import markdown_lines as generator_warning
from analysis.stages import markdown_table as breakdown_table
from analysis.terminal import format_duration

_KEY_METRICS = (
    ("requests", "Requests"),
    ("success_rate", "Success rate"),
    ("latency_avg_ms", "Avg latency (ms)"),
    ("latency_p50_ms", "P50 latency (ms)"),
    ("latency_p95_ms", "P95 latency (ms)"),
    ("latency_p99_ms", "P99 latency (ms)"),
    ("rps", "Throughput (req/s)"),
    ("cache_hit_rate", "Cache hit rate after warm-up"),
    ("token_reduction", "Token reduction"),
    ("instances", "Instances"),
    ("agents", "Agents"),
)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "n/a" if value is None else str(value).replace("|", "\\|")


def mark(c: Criterion) -> str:
    """✓ passed, ✗ failed (or skipped without --allow-skip), ⊘ skipped and accepted, ⚠ not
    measurable (the load generator saturated; not passed either)."""
    if c.not_measurable and not c.skipped:
        return "⚠"
    if c.skipped:
        return "✗⊘" if c.blocks else "⊘"
    return "✓" if c.passed else "✗"


def summary_markdown(
    *,
    scenario: str,
    run_id: str,
    criteria: list[Criterion],
    metrics: dict[str, Any],
    duration_s: float,
    coherency: CoherencyReport | None = None,
    resources: dict[str, Any] | None = None,
) -> str:
    """The whole Markdown document."""
    t = tally(criteria)
    verdict = "PASSED" if t.ok else "FAILED"
    lines = [
        f"# {scenario}: {verdict}",
        "",
        f"Run `{run_id}` · {format_duration(duration_s)} · {t.passed} passed, {t.failed} failed "
        f"({t.critical_failed} critical, {t.insufficient} for lack of evidence), {t.skipped} "
        f"skipped ({t.skipped_not_allowed} not allowed)"
        + (f", {t.not_measurable} not measurable" if t.not_measurable else ""),
        *generator_warning(metrics.get("load_generator")),
        "",
        "## Criteria",
        "",
        "| | Section | Criterion | Threshold | Measured | Evidence | Critical |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in criteria:
        lines.append(
            f"| {mark(c)} | {c.section} | {_cell(c.name)} | {_cell(c.threshold)} | "
            f"{_cell(c.measured_text())} | {_cell(c.evidence.text())} | "
            f"{'yes' if c.critical else 'no'} |"
        )
    problems = [c for c in criteria if c.failed or c.skipped]
    if problems:
        lines += ["", "## Not passed", ""]
        lines += [f"- {_cell(c.message())}" for c in problems]
    lines += ["", "## Metrics", "", "| Metric | Value |", "|---|---|"]
    lines += [
        f"| {label} | {_cell(metrics.get(key))} |" for key, label in _KEY_METRICS if key in metrics
    ]
    lines += breakdown_table(metrics.get("latency_breakdown"))
    errors = metrics.get("errors") or {}
    if errors:
        lines += ["", "## Errors", "", "| Error | Count |", "|---|---|"]
        lines += [f"| {_cell(label)} | {n} |" for label, n in errors.items()]
    if coherency is not None:
        lines += ["", "## Coherency", "", "```", *coherency.summary_lines(), "```"]
        for ex in coherency.stale.examples[:5]:
            lines.append(
                f"- stale read row {ex['read']['row']} on `{ex['namespace']}` at `{ex['instance_id']}`: "
                f"saw {ex['read']['version']}, missed {ex['missed']['version']} "
                f"acked {ex['since_ack_ms']:.2f} ms before it began"
            )
        for ex in coherency.content.examples[:5] if coherency.content else []:
            lines.append(
                f"- {ex['kind']} by content: read row {ex['read_row']} on `{ex['namespace']}` at "
                f"`{ex['read_instance']}` lacked memory {ex['memory_id']} (store row "
                f"{ex['write_row']}, acked {ex['since_ack_ms']:.2f} ms before it began)"
            )
    if resources:
        lines += ["", "## Resources", "", "| Resource | Value |", "|---|---|"]
        lines += [f"| {k} | {_cell(v)} |" for k, v in resources.items() if k != "growth"]
    return "\n".join(lines) + "\n"
