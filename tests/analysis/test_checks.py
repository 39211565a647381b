"""Criteria carry their evidence; too little evidence fails; skips fail unless allowed; and the
exit verdict, dashboard, summary.md and JUnit say the same thing."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.junit import junit_xml
from analysis.markdown import summary_markdown
from analysis.terminal import dashboard_box

ENOUGH = Evidence("comparable reads", 25, 20)
SHORT = Evidence("comparable reads", 0, 20)


def test_a_criterion_cannot_be_built_without_evidence():
    with pytest.raises(TypeError):
        Criterion("x", "", "= 0", 0.0, True)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        checks.equals("x", 0.0, 0)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Criterion("x", "", "= 0", 0.0, False, evidence="lots")  # type: ignore[arg-type]


def test_a_criterion_cannot_pass_on_insufficient_evidence():
    with pytest.raises(ValueError, match="insufficient evidence: 0 comparable reads"):
        Criterion("x", "", "= 0", 0.0, True, evidence=SHORT)
    with pytest.raises(ValueError):
        Evidence("", 1)
    with pytest.raises(ValueError):
        Evidence("reads", 1, -1)


def test_too_little_evidence_is_a_failure_with_a_clear_message():
    crit = checks.equals("no_stale_reads", 0.0, 0, evidence=SHORT)
    assert crit.failed and crit.insufficient and not crit.passed and not crit.skipped
    assert crit.verdict == "fail" and crit.blocks
    assert crit.message() == (
        "FAIL: no_stale_reads: insufficient evidence: 0 comparable reads (need ≥ 20); measured 0"
    )
    unknown = checks.holds("x", True, measured="?", expectation="ok", evidence=Evidence("w", None))
    assert unknown.insufficient and "unknown w (need ≥ 1)" in unknown.message()
    ok = checks.equals("no_stale_reads", 0.0, 0, evidence=ENOUGH)
    assert ok.passed and ok.verdict == "pass" and not ok.blocks
    d = ok.to_dict()
    assert d["evidence"] == {"what": "comparable reads", "got": 25, "need": 20, "enough": True}


def test_builders_apply_the_evidence():
    for build in (
        lambda e: checks.at_least("x", 5.0, 1, evidence=e),
        lambda e: checks.at_most("x", 0.0, 1, evidence=e),
        lambda e: checks.equals("x", 0.0, 0, evidence=e),
        lambda e: checks.holds("x", True, measured="m", expectation="t", evidence=e),
    ):
        assert build(ENOUGH).passed
        assert build(SHORT).insufficient


def _skip(name: str = "redis_stopped", critical: bool = True) -> Criterion:
    return checks.skipped(
        name,
        "Redis given by URL",
        critical=critical,
        evidence=Evidence("Redis outages run", 0, 1),
    )


def test_a_skipped_critical_criterion_fails_the_run_unless_allowed():
    skip = _skip()
    assert skip.skipped and not skip.failed and skip.blocks
    assert not checks.tally([skip]).ok
    assert checks.tally([skip]).skipped_not_allowed == 1
    assert "--allow-skip redis_stopped" in skip.message()
    allowed = checks.allow_skips([skip, _skip("other")], ["redis_stopped"])
    assert allowed[0].skip_allowed and not allowed[0].blocks
    assert not allowed[1].skip_allowed
    assert checks.tally(allowed[:1]).ok
    assert allowed[0].status() == "SKIPPED (allowed)"
    # A non-critical skip never fails the run, allowed or not.
    assert checks.tally([_skip(critical=False)]).ok
    # Only skipped criteria can be allowed: naming a failed one changes nothing.
    failed = checks.equals("x", 1.0, 0, evidence=ENOUGH)
    assert checks.allow_skips([failed], ["x"]) == [failed]


def _mixture() -> list[Criterion]:
    return [
        checks.equals("passes", 0.0, 0, evidence=ENOUGH),
        checks.equals("fails_critical", 1.0, 0, evidence=ENOUGH),
        checks.at_most("fails_non_critical", 300.0, 150, critical=False, evidence=ENOUGH),
        checks.equals("no_evidence", 0.0, 0, evidence=SHORT),
        _skip("skipped_blocking"),
        *checks.allow_skips([_skip("skipped_allowed")], ["skipped_allowed"]),
        _skip("skipped_non_critical", critical=False),
    ]


def test_junit_marks_every_failure_and_blocking_skip():
    doc = ET.fromstring(
        junit_xml(scenario="s", run_id="r", criteria=_mixture(), duration_s=1.0).split("\n", 1)[1]
    )
    suite = doc.find("testsuite")
    cases = {c.get("name"): c for c in suite.findall("testcase")}
    kinds = {
        name: (
            case.find("failure").get("type")
            if case.find("failure") is not None
            else "skipped"
            if case.find("skipped") is not None
            else "pass"
        )
        for name, case in cases.items()
    }
    assert kinds == {
        "passes": "pass",
        "fails_critical": "criterion",
        "fails_non_critical": "non_critical",
        "no_evidence": "insufficient_evidence",
        "skipped_blocking": "skipped",
        "skipped_allowed": "skipped",
        "skipped_non_critical": "skipped",
    }
    assert cases["skipped_blocking"].find("failure") is not None
    assert "--allow-skip skipped_blocking" in cases["skipped_blocking"].find("failure").get(
        "message"
    )
    assert cases["no_evidence"].find("failure").get("message") == (
        "insufficient evidence: 0 comparable reads (need ≥ 20)"
    )
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "4", "2")
    props = {p.get("name"): p.get("value") for p in suite.find("properties")}
    assert props["verdict"] == "failed"


def test_dashboard_summary_and_junit_agree_with_the_verdict():
    for criteria, verdict in (
        (_mixture()[:1], "PASSED"),
        ([_mixture()[0], _skip("skipped_blocking")], "FAILED"),
        (_mixture()[:1] + checks.allow_skips([_skip("s")], ["s"]), "PASSED"),
        ([checks.at_most("slow", 9.0, 1, critical=False, evidence=ENOUGH)], "PASSED"),
    ):
        ok = checks.tally(criteria).ok
        assert ok == (verdict == "PASSED")
        box = dashboard_box(scenario="s", criteria=criteria, metrics={}, duration_s=1.0)
        assert f"Verdict:         {verdict}" in box
        md = summary_markdown(
            scenario="s", run_id="r", criteria=criteria, metrics={}, duration_s=1.0
        )
        assert md.startswith(f"# s: {verdict}")
        xml = junit_xml(scenario="s", run_id="r", criteria=criteria, duration_s=1.0)
        assert f'name="verdict" value="{verdict.lower()}"' in xml


def test_summary_lists_what_did_not_pass_with_its_evidence():
    md = summary_markdown(scenario="s", run_id="r", criteria=_mixture(), metrics={}, duration_s=1)
    assert "| ✗⊘ |" in md and "| ⊘ |" in md
    assert "25 comparable reads (need ≥ 20)" in md
    assert "- FAIL: no_evidence: insufficient evidence" in md
    assert "- SKIPPED (not allowed): skipped_blocking: Redis given by URL; --allow-skip" in md
    assert "1 skipped (" not in md and "3 skipped (1 not allowed)" in md
