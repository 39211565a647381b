"""Tiny inline-SVG plots (line charts and histograms) for the self-contained HTML dashboard."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

import numpy as np

Series = dict[str, Sequence[tuple[float, float]]]
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")
WIDTH, HEIGHT = 640, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 30, 44
MAX_POINTS = 600


def _nice_step(span: float, n: int = 5) -> float:
    """A 1/2/2.5/5 × 10^k step giving about n intervals over span."""
    raw = span / n
    magnitude = 10 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)


def _nice_range(lo: float, hi: float) -> tuple[float, float, float]:
    """(lo, hi, step) widened outward to whole steps, so ticks land on round numbers."""
    if hi <= lo:
        hi = lo + 1.0
    step = _nice_step(hi - lo)
    return math.floor(lo / step) * step, math.ceil(hi / step) * step, step


def _ticks(lo: float, hi: float, step: float) -> list[float]:
    count = round((hi - lo) / step)
    return [lo + i * step for i in range(count + 1)]


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.2e}"


class _Frame:
    """Maps data coordinates into the plot area and draws axes."""

    def __init__(self, x_range: tuple[float, float], y_range: tuple[float, float]) -> None:
        self.x0, self.x1, self.x_step = _nice_range(*x_range)
        self.y0, self.y1, self.y_step = _nice_range(*y_range)
        self.w, self.h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(self, value: float) -> float:
        return LEFT + (value - self.x0) / (self.x1 - self.x0) * self.w

    def y(self, value: float) -> float:
        return TOP + self.h - (value - self.y0) / (self.y1 - self.y0) * self.h

    def axes(self, title: str, x_label: str, y_label: str) -> list[str]:
        parts = [
            f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
            f'<rect x="{LEFT}" y="{TOP}" width="{self.w}" height="{self.h}" fill="none" stroke="#999"/>',
            f'<text x="{LEFT + self.w / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(x_label)}</text>',
            f'<text x="14" y="{TOP + self.h / 2}" text-anchor="middle" '
            f'transform="rotate(-90 14 {TOP + self.h / 2})">{escape(y_label)}</text>',
        ]
        for tx in _ticks(self.x0, self.x1, self.x_step):
            px = self.x(tx)
            parts.append(
                f'<line x1="{px:.1f}" y1="{TOP + self.h}" x2="{px:.1f}" y2="{TOP + self.h + 4}" stroke="#999"/>'
            )
            parts.append(
                f'<text x="{px:.1f}" y="{TOP + self.h + 16}" text-anchor="middle">{_fmt(tx)}</text>'
            )
        for ty in _ticks(self.y0, self.y1, self.y_step):
            py = self.y(ty)
            parts.append(
                f'<line x1="{LEFT}" y1="{py:.1f}" x2="{LEFT + self.w}" y2="{py:.1f}" stroke="#eee"/>'
            )
            parts.append(
                f'<text x="{LEFT - 4}" y="{py + 4:.1f}" text-anchor="end">{_fmt(ty)}</text>'
            )
        return parts


def _wrap(parts: list[str], css_class: str) -> str:
    body = "\n".join(parts)
    return (
        f'<svg class="{css_class}" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">\n{body}\n</svg>'
    )


def _thin(points: Sequence[tuple[float, float]]) -> Sequence[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    idx = np.linspace(0, len(points) - 1, MAX_POINTS).astype(int)
    return [points[i] for i in idx]


def empty_chart(title: str, reason: str, css_class: str = "plot") -> str:
    """A placeholder panel saying why there is nothing to plot."""
    return _wrap(
        [
            f'<text x="{WIDTH / 2}" y="18" text-anchor="middle" font-weight="bold">{escape(title)}</text>',
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#777">{escape(reason)}</text>',
        ],
        css_class,
    )


def line_chart(
    series: Series,
    *,
    title: str,
    x_label: str,
    y_label: str,
    css_class: str = "plot",
    y_min: float | None = 0.0,
) -> str:
    """Polyline per named series, with axes, ticks and a legend."""
    points = [p for s in series.values() for p in s]
    if not points:
        return empty_chart(title, "no data", css_class)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    low = min(ys) if y_min is None else min(y_min, min(ys))
    frame = _Frame((min(xs), max(xs)), (low, max(ys) if max(ys) > low else low + 1.0))
    parts = frame.axes(title, x_label, y_label)
    for i, (name, pts) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        coords = " ".join(f"{frame.x(x):.1f},{frame.y(y):.1f}" for x, y in _thin(pts))
        parts.append(
            f'<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{coords}"/>'
        )
        ly = TOP + 12 + 14 * i
        parts.append(f'<rect x="{LEFT + 8}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        parts.append(f'<text x="{LEFT + 22}" y="{ly - 3}">{escape(name)}</text>')
    return _wrap(parts, css_class)


def cdf_points(values: Sequence[float]) -> list[tuple[float, float]]:
    """Empirical CDF as (value, fraction ≤ value) points."""
    arr = np.sort(np.asarray(values, dtype=float))
    n = arr.size
    return [(float(v), (i + 1) / n) for i, v in enumerate(arr)]


def histogram_chart(
    values: Sequence[float], *, title: str, x_label: str, bins: int = 30, css_class: str = "plot"
) -> str:
    """Bar histogram of the values."""
    if len(values) == 0:
        return empty_chart(title, "no samples", css_class)
    counts, edges = np.histogram(np.asarray(values, dtype=float), bins=bins)
    frame = _Frame((float(edges[0]), float(edges[-1])), (0.0, float(counts.max())))
    parts = frame.axes(title, x_label, "count")
    for count, lo, hi in zip(counts.tolist(), edges[:-1], edges[1:], strict=True):
        x, w = frame.x(lo), max(frame.x(hi) - frame.x(lo) - 1, 1)
        y = frame.y(count)
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{TOP + frame.h - y:.1f}" fill="{PALETTE[0]}"/>'
        )
    return _wrap(parts, css_class)
