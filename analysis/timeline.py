"""timeline.html: every request of a run on one zoomable time axis, faults as bands, witnesses
marked — the picture that explains a failure.

One lane per instance (the requests it served) and one per swarm (the requests its agents sent),
each request a point at its begin (driver clock, seconds from the first request) coloured by
outcome: ok, degraded, stale (a checker witness) or the error code. Faults of faults.parquet are
shaded bands labelled with the fault; run-long clock skews are listed in the title. Each witness
is drawn as a line from its write's ack to the stale read and described under the plot, with an
anchor (`timeline.html#witness-N`) that summary.md links to.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from html import escape
from typing import Any

import numpy as np
import plotly.graph_objects as go
import pyarrow as pa

from analysis.history_view import clock_columns
from analysis.plots import div, origin_ns, script_tag, shade

_SWARM = re.compile(r"-s(\d+)-a\d+$")
_OUTCOME_COLOURS = {"ok": "#2ca02c", "degraded": "#e6ab02", "stale": "#d62728"}
#: Error outcomes cycle through these.
_ERROR_COLOURS = ("#7f7f7f", "#8c564b", "#1f77b4", "#9467bd", "#17becf", "#bcbd22")


def _short(value: Any, prefix: str) -> str:
    text = str(value)
    return text[len(prefix) :] if prefix and text.startswith(prefix) else text


def outcomes(history: pa.Table, stale_rows: set[int]) -> list[str]:
    """Per row: "stale", "degraded", "ok" or "error <code>"."""
    success = history.column("success").to_pylist()
    degraded = history.column("degraded").to_pylist()
    codes = history.column("error_code").to_pylist()
    out = []
    for i in range(history.num_rows):
        if i in stale_rows:
            out.append("stale")
        elif not success[i]:
            out.append(f"error {codes[i] if codes[i] is not None else 'client'}")
        elif degraded[i]:
            out.append("degraded")
        else:
            out.append("ok")
    return out


def timeline_figure(
    history: pa.Table,
    faults: Sequence[dict[str, Any]] | None = None,
    witnesses: Sequence[dict[str, Any]] = (),
    stale_rows: set[int] | None = None,
) -> go.Figure:
    origin = origin_ns(history)
    begin = clock_columns(history)[0] if history.num_rows else np.array([])
    run_ids = history.column("run_id").to_pylist() if history.num_rows else []
    prefix = f"{run_ids[0]}-" if run_ids else ""
    instances = [
        _short(v, prefix) if v is not None else "no instance"
        for v in history.column("instance_id").to_pylist()
    ]
    agents = history.column("agent_id").to_pylist()
    swarms = []
    for agent in agents:
        match = _SWARM.search(str(agent))
        swarms.append(f"swarm-{match.group(1)}" if match else "driver")
    kinds = outcomes(history, stale_rows or set())
    methods = history.column("method").to_pylist()
    tiers = history.column("cache_tier").to_pylist()
    seen = history.column("version_seen").to_pylist()
    written = history.column("version_written").to_pylist()
    latency = history.column("latency_ms").to_pylist()
    reasons = history.column("error_reason").to_pylist()
    x = ((begin - origin) / 1e9).tolist() if history.num_rows else []
    fig = go.Figure()
    errors = sorted({k for k in kinds if k.startswith("error")})
    colours = {**_OUTCOME_COLOURS}
    colours.update({e: _ERROR_COLOURS[i % len(_ERROR_COLOURS)] for i, e in enumerate(errors)})
    for kind in ["ok", "degraded", *errors, "stale"]:
        idx = [i for i, k in enumerate(kinds) if k == kind]
        if not idx:
            continue
        hover = [
            f"{methods[i]} · {_short(agents[i], prefix)} → {instances[i]}<br>"
            f"{latency[i]:.1f} ms · tier {tiers[i] or '-'} · gen seen {seen[i]} "
            f"written {written[i]}<br>{kind}"
            + (f": {escape(str(reasons[i]))[:120]}" if reasons[i] else "")
            + f" · row {i}"
            for i in idx
        ]
        for lanes in (instances, swarms):
            fig.add_trace(
                go.Scattergl(
                    x=[x[i] for i in idx],
                    y=[lanes[i] for i in idx],
                    mode="markers",
                    marker={
                        "color": colours[kind],
                        "size": 9 if kind == "stale" else 5,
                        "symbol": "x" if kind == "stale" else "circle",
                    },
                    name=kind,
                    legendgroup=kind,
                    showlegend=lanes is instances,
                    text=hover,
                    hoverinfo="text+x",
                )
            )
    for w in witnesses:
        (wx, wy), (rx, ry) = w["write"], w["read"]
        fig.add_trace(
            go.Scatter(
                x=[wx, rx],
                y=[wy, ry],
                mode="lines+markers+text",
                line={"color": "#d62728", "dash": "dot"},
                marker={"symbol": ["star", "x"], "size": 12, "color": "#d62728"},
                text=[f"W{w['number']} write", f"W{w['number']} stale read"],
                textposition="top center",
                name=f"witness {w['number']}",
                hovertext=w["text"],
                hoverinfo="text",
            )
        )
    shade(fig, faults, origin)
    skews = [
        f"{f['fault']}"
        for f in faults or []
        if f.get("category") == "clock" and f.get("applied_ns") is not None
    ]
    lanes = sorted(set(instances)) + sorted(set(swarms))
    fig.update_layout(
        title="Requests by instance and swarm, faults shaded"
        + (f" (run-long: {', '.join(skews)})" if skews else ""),
        xaxis={"title": "time (s, driver clock)", "rangeslider": {"visible": True}},
        yaxis={"categoryorder": "array", "categoryarray": lanes[::-1], "type": "category"},
        height=max(420, 70 * len(lanes) + 200),
        hovermode="closest",
    )
    return fig


def render_timeline(
    *,
    run_id: str,
    scenario: str,
    history: pa.Table,
    faults: Sequence[dict[str, Any]] | None = None,
    witnesses: Sequence[dict[str, Any]] = (),
    stale_rows: set[int] | None = None,
) -> str:
    """The complete page (plotly.js inline, no network)."""
    fig = timeline_figure(history, faults, witnesses, stale_rows)
    fault_rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{escape(str(c))}</td>"
            for c in (
                f["fault"],
                f["category"],
                f.get("detail") or "",
                f.get("error") or "",
            )
        )
        + "</tr>"
        for f in faults or []
    )
    notes = "".join(
        f'<div class="witness" id="{escape(w["anchor"])}"><h3>Witness {w["number"]}</h3>'
        f"<p>{w['text']}</p></div>"
        for w in witnesses
    )
    return "\n".join(
        [
            "<!DOCTYPE html><html><head><meta charset='utf-8'>",
            f"<title>timeline · {escape(scenario)} · {escape(run_id)}</title>",
            script_tag(),
            "<style>body{font-family:sans-serif;margin:20px}td,th{border:1px solid #ccc;"
            "padding:3px 6px;font-size:13px}table{border-collapse:collapse}"
            ".witness{border-left:4px solid #d62728;padding-left:8px}</style></head><body>",
            f"<h1>{escape(scenario)} timeline</h1><p>run <code>{escape(run_id)}</code> · "
            '<a href="index.html">dashboard</a> · drag to zoom, double-click to reset</p>',
            div(fig, "timeline"),
            "<h2>Faults</h2><table><tr><th>fault</th><th>category</th><th>what ran</th>"
            f"<th>error</th></tr>{fault_rows}</table>"
            if faults
            else "<p>No faults.</p>",
            f"<h2>Witnesses</h2>{notes}" if notes else "",
            "</body></html>",
        ]
    )
