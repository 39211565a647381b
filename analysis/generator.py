"""Was the load generator itself saturated? Its phase reports, and what that does to timing criteria.

Each swarm measures its own event-loop lag and CPU over every phase (`actors.loop_health`; the
phase reports `actors.agents.PhaseReport` carry them). When a swarm was saturated during a timed
phase, every latency it recorded includes its own backlog, and every rate it achieved may be its
own ceiling: a timing criterion (`Criterion.timing`) then says "not measurable: load generator
saturated" — not a pass (nothing shows the service met its target), and not the service's fault.
Like Locust's "CPU usage above 90 %" warning and k6's dropped iterations.

Phase reports are read by attribute or key, so this works on `PhaseReport`s and on their dicts
(metrics.json) alike.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from analysis import checks
from analysis.checks import Criterion
from analysis.metrics import WARMUP_PHASES


@dataclass(frozen=True)
class SwarmPhase:
    """One swarm's health over one phase."""

    swarm_id: str
    phase: str
    loop_lag_ms_p99: float | None
    loop_lag_ms_max: float | None
    cpu_percent: float | None
    saturated: bool

    @classmethod
    def of(cls, report: Any) -> SwarmPhase:
        """From a `PhaseReport` or its dict."""

        def get(name: str) -> Any:
            return report.get(name) if isinstance(report, dict) else getattr(report, name, None)

        return cls(
            swarm_id=str(get("swarm_id")),
            phase=str(get("phase")),
            loop_lag_ms_p99=get("loop_lag_ms_p99"),
            loop_lag_ms_max=get("loop_lag_ms_max"),
            cpu_percent=get("cpu_percent"),
            saturated=bool(get("saturated")),
        )

    def text(self) -> str:
        """'swarm-0 in load (loop lag p99 82 ms, CPU 97 %)'."""
        lag = "n/a" if self.loop_lag_ms_p99 is None else f"{self.loop_lag_ms_p99:.0f} ms"
        cpu = "n/a" if self.cpu_percent is None else f"{self.cpu_percent:.0f} %"
        return f"{self.swarm_id} in {self.phase} (loop lag p99 {lag}, CPU {cpu})"


def saturated_in(
    reports: Iterable[Any], untimed_phases: Collection[str] = WARMUP_PHASES
) -> list[SwarmPhase]:
    """The swarm phases that saturated, among the timed ones (warm-up is not timed)."""
    phases = [SwarmPhase.of(r) for r in reports]
    return [p for p in phases if p.saturated and p.phase not in untimed_phases]


def reason(saturated: list[SwarmPhase], shown: int = 3) -> str:
    """'load generator saturated: swarm-0 in load (…), and 2 more'."""
    head = "; ".join(p.text() for p in saturated[:shown])
    more = f", and {len(saturated) - shown} more" if len(saturated) > shown else ""
    return f"load generator saturated: {head}{more}"


def judge_timing(
    criteria: list[Criterion],
    reports: Iterable[Any],
    untimed_phases: Collection[str] = WARMUP_PHASES,
) -> list[Criterion]:
    """`criteria` with every judged timing criterion marked not measurable when a swarm
    saturated during a timed phase; unchanged otherwise."""
    saturated = saturated_in(reports, untimed_phases)
    if not saturated:
        return list(criteria)
    why = reason(saturated)
    return [checks.not_measurable(c, why) if c.timing and not c.skipped else c for c in criteria]


def summary(
    reports: Iterable[Any], untimed_phases: Collection[str] = WARMUP_PHASES
) -> dict[str, Any]:
    """metrics.json's `load_generator`: whether it saturated in a timed phase, why, and every
    swarm phase's health."""
    reports = list(reports)
    saturated = saturated_in(reports, untimed_phases)
    return {
        "saturated": bool(saturated),
        "reason": reason(saturated) if saturated else None,
        "untimed_phases": sorted(untimed_phases),
        "phases": [asdict(SwarmPhase.of(r)) for r in reports],
    }


def markdown_lines(load_generator: dict[str, Any] | None) -> list[str]:
    """summary.md's line on the generator, right under the verdict: a warning when it saturated,
    else its worst figures over the timed phases (so a reader sees it was checked)."""
    if not load_generator:
        return []
    if not load_generator.get("saturated"):
        untimed = set(load_generator.get("untimed_phases") or ())
        timed = [p for p in load_generator.get("phases") or [] if p["phase"] not in untimed]
        lags = [p["loop_lag_ms_p99"] for p in timed if p.get("loop_lag_ms_p99") is not None]
        cpus = [p["cpu_percent"] for p in timed if p.get("cpu_percent") is not None]
        if not lags and not cpus:
            return []
        lag = f"{max(lags):.0f} ms" if lags else "n/a"
        cpu = f"{max(cpus):.0f} %" if cpus else "n/a"
        return [
            "",
            f"Load generator: not saturated in any timed phase (worst swarm loop lag p99 {lag}, "
            f"CPU {cpu} of a core).",
        ]
    return [
        "",
        f"> **⚠ {load_generator['reason']}.** Latencies and rates of the timed phases measure "
        "the load generator's own backlog as well as the service: timing criteria are marked "
        "*not measurable* (not passed, and not the service's fault). Run fewer agents per swarm, "
        "more swarms, or on more cores.",
    ]
