"""Interactive plots for the reports (Plotly, its JS embedded in the page: works offline), every
time axis shading the fault periods of faults.parquet.

Times are on the driver's clock (each row's measured clock offset removed, `history_view`), in
seconds from the first request, the same origin for every plot and for the fault bands.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc
from plotly.offline import get_plotlyjs

from analysis import resources as res
from analysis.history_view import clock_columns

#: Band colours per fault category.
CATEGORY_COLOURS = {
    "process": "rgba(214, 39, 40, 0.18)",
    "network": "rgba(255, 127, 14, 0.18)",
    "invalidation": "rgba(148, 103, 189, 0.18)",
    "clock": "rgba(23, 190, 207, 0.10)",
}
LAYOUT = {"height": 330, "width": 640, "margin": {"l": 60, "r": 20, "t": 50, "b": 45}}


@cache
def plotly_js() -> str:
    """The bundled plotly.js (minified), to inline once per page."""
    return get_plotlyjs()


def script_tag() -> str:
    return f'<script type="text/javascript">{plotly_js()}</script>'


def origin_ns(history: pa.Table) -> int:
    """Time 0 of every plot: the first request's begin on the driver's clock."""
    if history.num_rows == 0:
        return 0
    begin, _, _ = clock_columns(history)
    return int(begin.min())


def fault_windows(faults: Sequence[dict[str, Any]] | None, origin: int) -> list[dict[str, Any]]:
    """(start s, end s, label, category) of every applied fault; run-long clock faults excluded
    (they would cover the whole plot; their label is given in the title instead)."""
    out = []
    for f in faults or []:
        if f.get("category") == "clock" or f.get("applied_ns") is None:
            continue
        end = f.get("healed_ns") or f["applied_ns"]
        out.append(
            {
                "x0": (int(f["applied_ns"]) - origin) / 1e9,
                "x1": (int(end) - origin) / 1e9,
                "label": str(f["fault"]).split("@")[0],
                "category": f["category"],
            }
        )
    return out


def shade(fig: go.Figure, faults: Sequence[dict[str, Any]] | None, origin: int) -> go.Figure:
    """Fault periods as vertical bands (with their label) on `fig`'s time axis."""
    for w in fault_windows(faults, origin):
        fig.add_vrect(
            x0=w["x0"],
            x1=max(w["x1"], w["x0"] + 0.05),
            fillcolor=CATEGORY_COLOURS.get(w["category"], "rgba(0,0,0,0.1)"),
            line_width=0,
            layer="below",
            annotation_text=w["label"],
            annotation_position="top left",
            annotation_font_size=9,
        )
    return fig


def div(fig: go.Figure, div_id: str) -> str:
    """The figure as a <div> (plotly.js must be on the page once, `script_tag`)."""
    return fig.to_html(full_html=False, include_plotlyjs=False, div_id=div_id)


def _rate_series(times_s: np.ndarray, bucket_s: float) -> tuple[list[float], list[float]]:
    if times_s.size == 0:
        return [], []
    counts = np.bincount(np.floor(np.maximum(times_s, 0) / bucket_s).astype(np.int64))
    return [i * bucket_s for i in range(counts.size)], (counts / bucket_s).tolist()


def history_figures(
    history: pa.Table, faults: Sequence[dict[str, Any]] | None = None, bucket_s: float = 1.0
) -> list[str]:
    """Latency CDF, throughput (completed and failed) and cache hit rate over time."""
    if history.num_rows == 0:
        return []
    origin = origin_ns(history)
    begin, end, _ = clock_columns(history)
    success = np.asarray(history.column("success").to_pylist(), dtype=bool)
    ops = np.asarray(history.column("op").to_pylist(), dtype=object)
    latency = np.asarray(history.column("latency_ms").to_pylist(), dtype=float)
    cdf = go.Figure()
    for op in sorted({str(o) for o in ops[success]}):
        values = np.sort(latency[success & (ops == op)])
        fractions = np.arange(1, values.size + 1) / values.size
        cdf.add_trace(
            go.Scatter(x=values, y=fractions, mode="lines", name=f"{op} (n={values.size})")
        )
    cdf.update_layout(
        title="Latency CDF (successful requests)",
        xaxis_title="latency (ms)",
        yaxis_title="fraction ≤ x",
        **LAYOUT,
    )
    ends = (end - origin) / 1e9
    throughput = go.Figure()
    x, y = _rate_series(ends[success], bucket_s)
    throughput.add_trace(go.Scatter(x=x, y=y, mode="lines", name="completed"))
    if (~success).any():
        x, y = _rate_series(ends[~success], bucket_s)
        throughput.add_trace(go.Scatter(x=x, y=y, mode="lines", name="failed"))
    throughput.update_layout(
        title="Throughput over time", xaxis_title="time (s)", yaxis_title="requests/s", **LAYOUT
    )
    hits = go.Figure()
    tier = history.column("cache_hit")
    known = np.asarray(pc.is_valid(tier).to_pylist(), dtype=bool) & success
    if known.any():
        starts = (begin[known] - origin) / 1e9
        hit = np.asarray(pc.fill_null(tier, False).to_pylist(), dtype=float)[known]
        idx = np.floor(np.maximum(starts, 0) / bucket_s).astype(np.int64)
        totals = np.bincount(idx)
        rates = np.bincount(idx, weights=hit)
        keep = totals > 0
        hits.add_trace(
            go.Scatter(
                x=(np.flatnonzero(keep) * bucket_s).tolist(),
                y=(rates[keep] / totals[keep]).tolist(),
                mode="lines",
                name="hit rate",
            )
        )
    hits.update_layout(
        title="Cache hit rate over time", xaxis_title="time (s)", yaxis_title="hit rate", **LAYOUT
    )
    for fig in (throughput, hits):
        shade(fig, faults, origin)
    return [
        div(cdf, "plot-latency-cdf"),
        div(throughput, "plot-throughput"),
        div(hits, "plot-hit-rate"),
    ]


def resource_figures(
    table: pa.Table, faults: Sequence[dict[str, Any]] | None = None, origin: int | None = None
) -> list[str]:
    """One line chart per sampled resource column, a line per source, fault bands shaded.

    Resource samples are taken on the driver; their times are relative to the first sample
    (`analysis.resources.series`), shifted here onto the history's origin when given.
    """
    specs = (
        ("cpu_percent", "CPU (% of machine)", 1.0),
        ("rss_bytes", "RSS (MB)", float(res.MB)),
        ("db_connections", "PostgreSQL connections", 1.0),
        ("pool_wait_ms", "Pool wait (ms)", 1.0),
        ("redis_used_memory", "Redis used memory (MB)", float(res.MB)),
    )
    shift = 0.0
    if origin is not None and table.num_rows and "t_ns" in table.column_names:
        shift = (int(pc.min(table.column("t_ns")).as_py()) - origin) / 1e9
    out = []
    for column, label, scale in specs:
        series = res.series(table, column)
        if not series:
            continue
        fig = go.Figure()
        for src, pts in series.items():
            fig.add_trace(
                go.Scatter(
                    x=[t + shift for t, _ in pts],
                    y=[v / scale for _, v in pts],
                    mode="lines",
                    name=str(src),
                )
            )
        fig.update_layout(title=label, xaxis_title="time (s)", yaxis_title=label, **LAYOUT)
        if origin is not None:
            shade(fig, faults, origin)
        out.append(div(fig, f"plot-resource-{column}"))
    return out


def histogram_figure(values: Sequence[float], *, title: str, x_label: str, div_id: str) -> str:
    fig = go.Figure(go.Histogram(x=list(values), nbinsx=40))
    fig.update_layout(title=title, xaxis_title=x_label, yaxis_title="count", **LAYOUT)
    return div(fig, div_id)
