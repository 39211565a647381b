"""A saturated load generator makes timing criteria not measurable (not passed, not blamed)."""

from __future__ import annotations

from actors.agents import PhaseReport
from analysis import checks, criteria, generator
from analysis.checks import Evidence
from analysis.junit import junit_xml
from analysis.markdown import summary_markdown
from analysis.terminal import dashboard_box
from tests.history_rows import Rows


def _fast_history():
    r = Rows()
    for i in range(40):
        r.add(send=i * 10.0, recv=i * 10.0 + 5.0, op="read", phase="load")
    return r.table()


def _judged():
    table = _fast_history()
    return [
        criteria.percentile_latency_criterion(table, 95, 250.0),
        criteria.rps_criterion(table, 10.0),
        criteria.success_rate_criterion(table, 95.0),
        checks.holds(
            "no_degradation_over_time",
            True,
            measured="flat",
            expectation="flat",
            evidence=Evidence("thirds", 3, 3),
            timing=True,
        ),
    ]


def _report(phase: str, *, saturated: bool) -> PhaseReport:
    return PhaseReport(
        "swarm-0",
        phase,
        loop_lag_ms_p99=120.0 if saturated else 2.0,
        cpu_percent=97.0 if saturated else 30.0,
        saturated=saturated,
    )


def test_timing_criteria_are_the_ones_measured_in_time_or_rate() -> None:
    timing = {c.name: c.timing for c in _judged()}
    assert timing == {
        "p95_latency": True,
        "throughput": True,
        "success_rate": False,
        "no_degradation_over_time": True,
    }


def test_an_unsaturated_generator_leaves_every_criterion_judged_as_it_was() -> None:
    before = _judged()
    assert all(c.passed for c in before)
    after = generator.judge_timing(before, [_report("load", saturated=False)])
    assert after == before


def test_a_saturated_generator_makes_timing_criteria_not_measurable() -> None:
    after = generator.judge_timing(_judged(), [_report("load", saturated=True)])
    by = {c.name: c for c in after}
    for name in ("p95_latency", "throughput", "no_degradation_over_time"):
        c = by[name]
        assert not c.passed and c.failed and c.verdict == "fail"  # not a pass
        assert c.not_measurable and "load generator saturated" in c.not_measurable
        assert c.status() == "NOT MEASURABLE"
        assert "swarm-0 in load (loop lag p99 120 ms, CPU 97 %)" in c.message()
        assert "not a verdict on the service" in c.message()
    assert by["success_rate"].passed  # not a timing criterion: judged as before
    t = checks.tally(after)
    assert not t.ok and t.not_measurable == 3 and t.insufficient == 0


def test_saturation_during_warmup_does_not_count() -> None:
    reports = [_report("warmup", saturated=True), _report("load", saturated=False)]
    assert generator.judge_timing(_judged(), reports) == _judged()
    summary = generator.summary(reports)
    assert not summary["saturated"]
    assert generator.markdown_lines(summary)[-1] == (
        "Load generator: not saturated in any timed phase (worst swarm loop lag p99 2 ms, "
        "CPU 30 % of a core)."
    )


def test_a_not_measurable_criterion_cannot_pass() -> None:
    c = _judged()[0]
    try:
        checks.Criterion(**{**c.__dict__, "not_measurable": "load generator saturated"})
    except ValueError as exc:
        assert "cannot pass" in str(exc)
    else:
        raise AssertionError("a not measurable criterion passed")


def test_reports_say_so_prominently() -> None:
    reports = [_report("load", saturated=True).__dict__]  # as metrics.json keeps them
    after = generator.judge_timing(_judged(), reports)
    load_generator = generator.summary(reports)
    assert load_generator["saturated"] and load_generator["phases"][0]["cpu_percent"] == 97.0
    metrics = {"load_generator": load_generator}
    md = summary_markdown(
        scenario="throughput", run_id="r", criteria=after, metrics=metrics, duration_s=1.0
    )
    head = md.split("## Criteria")[0]
    assert "⚠ load generator saturated: swarm-0 in load" in head and "3 not measurable" in head
    assert "| ⚠ |" in md
    box = dashboard_box(scenario="t", criteria=after, metrics=metrics, duration_s=1.0)
    assert "⚠ load generator saturated" in box and "NOT MEASURABLE: p95_latency" in box
    assert "P95 Latency:" in box and "⚠" in box.split("P95 Latency:")[1].split("\n")[0]
    xml = junit_xml(scenario="t", run_id="r", criteria=after, duration_s=1.0, started_at=None)
    assert 'type="not_measurable"' in xml
