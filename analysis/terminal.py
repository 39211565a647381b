"""The plan's section 12 dashboard box, printed at the end of every run.

✓/✗ next to a metric come from the criteria that judged it (`Criterion.metric`); a metric this
scenario did not judge gets "–" rather than a verdict against targets it never promised.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from analysis.checks import Criterion, tally

INNER = 45  # box width between the borders


def format_duration(seconds: float) -> str:
    """'8m 34s' for long runs, '12.3s' for short ones."""
    if seconds >= 60:
        minutes, secs = divmod(round(float(seconds)), 60)
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f}s"


def verdict(criteria: list[Criterion], metric: str) -> str:
    """✓ if every criterion judging `metric` passed, ✗ if one failed, ⚠ if one could not be
    judged (the load generator saturated), – if none judged it."""
    judged = [c for c in criteria if c.metric == metric and not c.skipped]
    if not judged:
        return "–"
    if any(c.failed and not c.not_measurable for c in judged):
        return "✗"
    if any(c.not_measurable for c in judged):
        return "⚠"
    return "✓" if all(c.passed for c in judged) else "✗"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.0f}ms" if value >= 10 else f"{value:.2f}ms"


def _line(text: str = "") -> str:
    return f"│{text[:INNER].ljust(INNER)}│"


def _row(label: str, value: str, mark: str | None = None) -> str:
    cell = f"  {label:<17}{value:<10}"
    return _line(cell + (f" {mark}" if mark else ""))


def dashboard_box(
    *,
    scenario: str,
    criteria: list[Criterion],
    metrics: dict[str, Any],
    duration_s: float,
    stale_reads: int | None = None,
) -> str:
    """The whole box as one string (no trailing newline)."""
    t = tally(criteria)
    rule = "─" * INNER
    rps = metrics.get("rps")
    lines = [
        f"┌{rule}┐",
        _line("TMWS Pattern Execution Integration".center(INNER)),
        _line("Test Results".center(INNER)),
        _line(f"scenario: {scenario}".center(INNER)),
        f"├{rule}┤",
        _line(),
        _row("Total Tests:", str(t.total)),
        _row("✓ Passed:", str(t.passed)),
        _row("✗ Failed:", str(t.failed)),
        _row("⊘ Skipped:", _skips(t.skipped, t.skipped_not_allowed)),
        _row("Verdict:", "PASSED" if t.ok else "FAILED"),
        _line(),
        _row("Success Rate:", f"{100 * t.pass_rate:.1f}%"),
        _row("Requests OK:", _pct(metrics.get("success_rate")), verdict(criteria, "success_rate")),
        _row("Duration:", format_duration(duration_s)),
        _line(),
        f"├{rule}┤",
        _line("  Performance Metrics"),
        f"├{rule}┤",
        _line(),
        _row(
            "Avg Latency:", _ms(metrics.get("latency_avg_ms")), verdict(criteria, "latency_avg_ms")
        ),
        _row(
            "P95 Latency:", _ms(metrics.get("latency_p95_ms")), verdict(criteria, "latency_p95_ms")
        ),
        _row("Throughput:", "n/a" if rps is None else f"{rps:.0f} RPS", verdict(criteria, "rps")),
        _row(
            "Token Reduction:",
            _pct(metrics.get("token_reduction")),
            verdict(criteria, "token_reduction"),
        ),
        _row(
            "Cache Hit Rate:",
            _pct(metrics.get("cache_hit_rate")),
            verdict(criteria, "cache_hit_rate"),
        ),
    ]
    if stale_reads is not None:
        lines.append(_row("Stale Reads:", str(stale_reads), verdict(criteria, "stale_reads")))
    lines += [_line(), f"└{rule}┘"]
    generator = metrics.get("load_generator") or {}
    if generator.get("saturated"):
        lines.append(f"⚠ {generator['reason']}: timing criteria not measurable")
    for c in criteria:
        if c.not_measurable and c.failed:
            lines.append(f"⚠ {'' if c.critical else '(non-critical) '}{c.message()}")
        elif c.failed or (c.skipped and c.blocks):
            lines.append(f"✗ {'' if c.critical else '(non-critical) '}{c.message()}")
        elif c.skipped:
            lines.append(f"⊘ {c.message()}")
    return "\n".join(lines)


def _skips(skipped: int, not_allowed: int) -> str:
    return f"{skipped} ({not_allowed} not allowed)" if not_allowed else str(skipped)


def print_dashboard(out: TextIO | None = None, **kwargs: Any) -> None:
    """Print `dashboard_box(**kwargs)` (to stdout by default)."""
    print(dashboard_box(**kwargs), file=out or sys.stdout)
