"""index.html: a self-contained dashboard (inline CSS; interactive Plotly charts whose plotly.js is
embedded in the page — no fonts, CDNs or network; fault periods shaded on every time axis)."""

from __future__ import annotations

from html import escape
from typing import Any

import pyarrow as pa

from analysis import plots
from analysis import resources as res
from analysis.checks import Criterion, tally
from analysis.coherency import CoherencyReport
from analysis.markdown import mark
from analysis.propagation import all_delays_ms
from analysis.stage_plots import breakdown_figures
from analysis.terminal import dashboard_box

_CSS = """
body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}
h1 .pass{color:#2a7d2a}h1 .fail{color:#b22}
pre.box{background:#111;color:#eee;padding:12px;display:inline-block;line-height:1.1}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}
tr.fail td{background:#fde2e2}tr.skip td{color:#888}tr.unmeasurable td{background:#fff3cd}
.warn{background:#fff3cd;border:2px solid #d9a400;padding:8px 12px;font-size:15px}
.plots{display:flex;flex-wrap:wrap;gap:12px}.plots svg{border:1px solid #ddd;background:#fff}
"""
_PROPAGATION_HEAD = (
    "instance",
    "writes seen",
    "delay p50",
    "delay p95",
    "delay max",
    "window p95",
    "window max",
    "unobserved",
)


def _row(cells: tuple[Any, ...], css: str = "") -> str:
    attr = f' class="{css}"' if css else ""
    return f"<tr{attr}>" + "".join(f"<td>{escape(str(c))}</td>" for c in cells) + "</tr>"


def _head(names: tuple[str, ...]) -> str:
    return "<tr>" + "".join(f"<th>{escape(n)}</th>" for n in names) + "</tr>"


def _criteria_table(criteria: list[Criterion]) -> str:
    rows = []
    for c in criteria:
        state = "unmeasurable" if c.not_measurable else "fail" if c.blocks else c.verdict
        critical = "yes" if c.critical else "no"
        cells = (
            mark(c),
            c.section,
            c.name,
            c.threshold,
            c.measured_text(),
            c.evidence.text(),
            critical,
            c.description,
        )
        rows.append(_row(cells, state))
    head = _head(
        ("", "Section", "Criterion", "Threshold", "Measured", "Evidence", "Critical", "What")
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _kv_table(items: dict[str, Any]) -> str:
    def fmt(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    return "<table>" + "".join(_row((k, fmt(v))) for k, v in items.items()) + "</table>"


def _ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} ms"


def _propagation_row(instance: str, stats: dict[str, Any]) -> str:
    d, w = stats["delay_ms"], stats["staleness_window_ms"]
    cells = (instance, d["count"], _ms(d["p50"]), _ms(d["p95"]), _ms(d["max"]))
    return _row((*cells, _ms(w["p95"]), _ms(w["max"]), stats["unobserved"]))


def _coherency_section(report: CoherencyReport) -> str:
    plot = plots.histogram_figure(
        all_delays_ms(report.propagation),
        title="Invalidation propagation delay",
        x_label="ms after ack",
        div_id="plot-propagation",
    )
    prop_rows = "".join(
        _propagation_row(inst, d.stats()) for inst, d in sorted(report.propagation.items())
    )
    examples = "".join(
        _row(
            (
                ex["instance_id"],
                ex["namespace"],
                ex["read"]["row"],
                ex["read"]["version"],
                ex["missed"]["version"],
                f"{ex['since_ack_ms']:.3f}",
            )
        )
        for ex in report.stale.examples
    )
    stale_table = ""
    if examples:
        head = _head(("instance", "namespace", "row", "saw", "missed", "ms after ack"))
        stale_table = f"<h3>Stale reads (first examples)</h3><table>{head}{examples}</table>"
    summary = escape("\n".join(report.summary_lines()))
    return (
        f"<h2>Coherency ({escape(report.mode)})</h2><pre>{summary}</pre>"
        f'<div class="plots">{plot}</div>{stale_table}<h3>Per-instance propagation</h3>'
        f"<table>{_head(_PROPAGATION_HEAD)}{prop_rows}</table>"
    )


def _generator_warning(load_generator: dict[str, Any] | None) -> str:
    if not load_generator or not load_generator.get("saturated"):
        return ""
    return (
        f'<p class="warn">⚠ <b>{escape(str(load_generator["reason"]))}</b>. Latencies and rates '
        "of the timed phases include the load generator's own backlog: timing criteria are "
        "marked not measurable (not passed, and not the service's fault).</p>"
    )


def render_dashboard(
    *,
    run_id: str,
    scenario: str,
    history: pa.Table,
    criteria: list[Criterion],
    metrics: dict[str, Any],
    duration_s: float,
    resources: pa.Table | None = None,
    coherency: CoherencyReport | None = None,
    faults: list[dict[str, Any]] | None = None,
) -> str:
    """The complete HTML page."""
    t = tally(criteria)
    verdict = '<span class="pass">PASSED</span>' if t.ok else '<span class="fail">FAILED</span>'
    box = dashboard_box(
        scenario=scenario,
        criteria=criteria,
        metrics=metrics,
        duration_s=duration_s,
        stale_reads=None if coherency is None else coherency.stale.count,
    )
    flat = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list))}
    parts = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{escape(scenario)} · {escape(run_id)}</title>",
        f"<style>{_CSS}</style>{plots.script_tag()}</head><body>",
        f"<h1>{escape(scenario)}: {verdict}</h1><p>run <code>{escape(run_id)}</code></p>",
        _generator_warning(metrics.get("load_generator")),
        f'<pre class="box">{escape(box)}</pre>',
        f"<h2>Criteria</h2>{_criteria_table(criteria)}",
        '<p><a href="timeline.html">timeline.html</a>: every request by instance and swarm, '
        "faults and witnesses</p>",
        f'<h2>Plots</h2><div class="plots">{"".join(plots.history_figures(history, faults))}</div>',
    ]
    breakdown = breakdown_figures(history, metrics.get("latency_breakdown"), faults)
    if breakdown:
        parts.append(
            "<h2>Where the time goes</h2><p>Server stage timings stacked against each request's "
            "latency; <i>unaccounted</i> is network, serialisation, both event loops' backlogs "
            "and (open loop) the generator's lag behind its schedule. The ≥p95 bars are the "
            "slowest 5 %, labelled with the share the server's stages explain.</p>"
            f'<div class="plots">{"".join(breakdown)}</div>'
        )
    if coherency is not None:
        parts.append(_coherency_section(coherency))
    if resources is not None and resources.num_rows:
        figures = "".join(
            plots.resource_figures(resources, faults, plots.origin_ns(history) or None)
        )
        summary = {k: v for k, v in res.resource_summary(resources).items() if k != "growth"}
        parts.append(f'<h2>Resources</h2><div class="plots">{figures}</div>{_kv_table(summary)}')
    parts.append(f"<h2>Metrics</h2>{_kv_table(flat)}")
    if metrics.get("errors"):
        parts.append(f"<h2>Errors</h2>{_kv_table(metrics['errors'])}")
    parts.append("</body></html>")
    return "\n".join(parts)
