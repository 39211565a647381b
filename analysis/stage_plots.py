"""The dashboard's latency breakdown: where each request's time went, stacked by stage.

Per method, per instance and per phase, two bars each: the mean over all successful requests and the mean
over the slowest 5 % (latency ≥ the group's p95), segments as `analysis.stages.SEGMENTS`, the tail
bar labelled with the share of it the server's stages account for. Over time: the mean per
segment in each time bucket, stacked, fault periods shaded like every other time axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.compute as pc

from analysis import stages
from analysis.history_view import clock_columns
from analysis.plots import LAYOUT, div, origin_ns, shade

#: One colour per segment; unaccounted in grey (it is not the server's).
COLOURS = {
    "queue": "#8c564b",
    "route": "#1f77b4",
    "cache": "#2ca02c",
    "execute": "#ff7f0e",
    "db": "#d62728",
    "llm": "#9467bd",
    "record": "#e377c2",
    stages.SERVER_OTHER: "#bcbd22",
    stages.UNACCOUNTED: "#c7c7c7",
}
#: At most this many buckets on the time axis (long runs get wider buckets).
MAX_BUCKETS = 120


def _bars(groups: dict[str, dict[str, Any]], title: str, div_id: str) -> str:
    labels: list[str] = []
    for key in groups:
        labels += [f"{key} · mean", f"{key} · ≥p95"]
    fig = go.Figure()
    for segment in stages.SEGMENTS:
        values = []
        for g in groups.values():
            values += [g["mean"][segment], g["tail"][segment]]
        if not any(v > 0 for v in values):
            continue
        fig.add_trace(
            go.Bar(x=labels, y=values, name=segment, marker_color=COLOURS.get(segment, "#7f7f7f"))
        )
    for key, g in groups.items():
        accounted = g["tail_accounted_pct"]
        fig.add_annotation(
            x=f"{key} · ≥p95",
            y=g["tail_latency_mean_ms"],
            text="no server timings" if accounted is None else f"{accounted:.0f} % server",
            showarrow=False,
            yshift=10,
            font={"size": 10},
        )
    layout = {**LAYOUT, "width": max(LAYOUT["width"], 120 * len(labels))}
    fig.update_layout(
        title=title, barmode="stack", yaxis_title="ms (mean)", xaxis_tickangle=-30, **layout
    )
    return div(fig, div_id)


def _over_time(
    history: pa.Table, faults: Sequence[dict[str, Any]] | None, origin: int
) -> str | None:
    ok = history.filter(pc.equal(history.column("success"), True))
    if ok.num_rows == 0:
        return None
    segs, _ = stages.segments(ok)
    begin, _, _ = clock_columns(ok)
    starts = np.maximum((begin - origin) / 1e9, 0.0)
    bucket = max(1.0, float(np.ceil(starts.max() / MAX_BUCKETS)) if starts.size else 1.0)
    idx = np.floor(starts / bucket).astype(np.int64)
    counts = np.bincount(idx)
    keep = counts > 0
    x = (np.flatnonzero(keep) * bucket).tolist()
    fig = go.Figure()
    for segment in stages.SEGMENTS:
        sums = np.bincount(idx, weights=segs[segment], minlength=counts.size)
        if not sums.any():
            continue
        fig.add_trace(
            go.Scatter(
                x=x,
                y=(sums[keep] / counts[keep]).tolist(),
                mode="lines",
                name=segment,
                stackgroup="one",
                line={"width": 0.5, "color": COLOURS.get(segment, "#7f7f7f")},
            )
        )
    fig.update_layout(
        title=f"Where the time goes over time (mean per {bucket:g} s, by send time)",
        xaxis_title="time (s)",
        yaxis_title="ms (mean)",
        **LAYOUT,
    )
    shade(fig, faults, origin)
    return div(fig, "plot-breakdown-time")


def breakdown_figures(
    history: pa.Table,
    breakdown: dict[str, Any] | None,
    faults: Sequence[dict[str, Any]] | None = None,
) -> list[str]:
    """Stacked bars per method, per instance and per phase (when there are several), and the
    stacked breakdown over time."""
    if history.num_rows == 0 or not breakdown:
        return []
    out = []
    if breakdown.get("by_method"):
        out.append(
            _bars(breakdown["by_method"], "Latency breakdown by method", "plot-breakdown-method")
        )
    if breakdown.get("by_instance"):
        out.append(
            _bars(
                breakdown["by_instance"],
                "Latency breakdown by instance (requests with server timings)",
                "plot-breakdown-instance",
            )
        )
    if len(breakdown.get("by_phase") or {}) > 1:
        out.append(
            _bars(
                breakdown["by_phase"],
                "Latency breakdown by phase (requests with server timings)",
                "plot-breakdown-phase",
            )
        )
    over_time = _over_time(history, faults, origin_ns(history))
    if over_time is not None:
        out.append(over_time)
    return out
