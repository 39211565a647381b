"""The acknowledged-write probe's judgement, from plain data (no servers)."""

from __future__ import annotations

from typing import Any

from actors.recorder import Outcome
from analysis.checks import Evidence
from experiments.support.acked_writes import (
    Visibility,
    memory_route,
    visibility_criterion,
    write_outcome,
)
from experiments.support.driver import Call


def _call(ok: bool, data: Any = None) -> Call:
    if ok:
        return Call({"result": {}}, Outcome.ok({}), {"success": True})
    reply = {"error": {"code": -32002, "message": "m", "data": data}}
    return Call(
        reply, Outcome(error_code=-32002, error_reason="cache_unavailable"), {"success": False}
    )


def test_write_outcomes_acked_refused_or_possibly_applied() -> None:
    assert write_outcome(_call(True)) == ("acked", None)
    assert write_outcome(_call(False, {"applied": False}))[0] == "refused"
    # An error that does not say applied=false may have been applied: unknown, never counted.
    assert write_outcome(_call(False, {"applied": True}))[0] == "unknown"
    assert write_outcome(_call(False, None))[0] == "unknown"


def _report(seen: list[bool], outcome: str = "acked", errors: list[str] | None = None) -> Any:
    return {
        "writes": [{"marker": "mk1", "outcome": outcome}, {"marker": "mk2", "outcome": "refused"}],
        "sightings": [
            {"marker": "mk1", "instance": f"i{n}", "via": "pattern", "seen": s,
             "degraded": False, "cache_tier": "l2"}
            for n, s in enumerate(seen)
        ],
        "read_errors": errors or [],
    }  # fmt: skip


def _judge(report: Any) -> Any:
    vis = Visibility.of([report], "pattern", instances=3)
    return visibility_criterion(
        "visible",
        vis,
        [report],
        "cached",
        evidence=Evidence("writes", vis.attempted, 1),
        section="x",
    )


def test_every_acknowledged_write_must_be_in_every_answer() -> None:
    assert _judge(_report([True, True, True])).passed
    missed = _judge(_report([True, False, True]))
    assert not missed.passed and "mk1 not in the pattern answer of i1" in missed.measured


def test_a_view_that_was_not_read_cannot_pass() -> None:
    # One instance never answered with the memory pattern: that view is not judged, so no pass.
    partial = _judge(_report([True, True], errors=["pattern on i2: not_memory_route"]))
    assert not partial.passed and "not judged" in partial.measured
    # A failed recall does not block the cached view's verdict.
    assert _judge(_report([True, True, True], errors=["recall on i2: -32002 x"])).passed


def test_memory_route_expectation() -> None:
    assert memory_route({"route": "memory"}) is None
    assert "llm" in (memory_route({"route": "llm"}) or "")
