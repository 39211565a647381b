"""JUnit XML: one testsuite per scenario, one testcase per criterion (for CI test tabs).

It agrees with the exit code: every failed criterion is a `<failure>` (critical or not, with its
type saying which), an allowed or non-critical skip is `<skipped>`, and a critical skip the user
did not allow is a `<failure type="skipped">` because it fails the run.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from analysis.checks import Criterion, tally


def _is_failure(c: Criterion) -> bool:
    return c.failed or (c.skipped and c.blocks)


def _failure_type(c: Criterion) -> str:
    if c.skipped:
        return "skipped"
    if c.not_measurable:
        return "not_measurable" if c.critical else "non_critical_not_measurable"
    if c.insufficient:
        return "insufficient_evidence" if c.critical else "non_critical_insufficient_evidence"
    return "criterion" if c.critical else "non_critical"


def _failure_message(c: Criterion) -> str:
    if c.skipped:
        return f"skipped, not allowed: {c.measured_text()} (accept with --allow-skip {c.name})"
    if c.not_measurable:
        return f"not measurable: {c.not_measurable}"
    if c.insufficient:
        return c.evidence.shortfall()
    return f"expected {c.threshold}, measured {c.measured_text()}"


def junit_xml(
    *,
    scenario: str,
    run_id: str,
    criteria: list[Criterion],
    duration_s: float,
    started_at: datetime | None = None,
) -> str:
    """The JUnit document; each failure carries 'expected <threshold>, measured <value>' or the
    evidence that was missing."""
    t = tally(criteria)
    failures = sum(1 for c in criteria if _is_failure(c))
    counts = {
        "tests": str(t.total),
        "failures": str(failures),
        "errors": "0",
        "skipped": str(t.skipped - t.skipped_not_allowed),
        "time": f"{duration_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "tmws-integration", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": scenario, **counts})
    if started_at is not None:
        suite.set("timestamp", started_at.isoformat(timespec="seconds"))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "run_id", "value": run_id})
    ET.SubElement(props, "property", {"name": "verdict", "value": "passed" if t.ok else "failed"})
    for c in criteria:
        classname = f"{scenario}.section_{c.section}" if c.section else scenario
        case = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": c.name, "time": "0"}
        )
        if _is_failure(c):
            failure = ET.SubElement(
                case, "failure", {"message": _failure_message(c), "type": _failure_type(c)}
            )
            failure.text = f"{c.description}\nevidence: {c.evidence.text()}"
        elif c.skipped:
            ET.SubElement(case, "skipped", {"message": c.measured_text()})
        out = ET.SubElement(case, "system-out")
        out.text = f"{c.message()}\nevidence: {c.evidence.text()}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
