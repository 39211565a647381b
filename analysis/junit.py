"""JUnit XML: one testsuite per scenario, one testcase per criterion (for CI test tabs)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import datetime

from analysis.checks import Criterion, tally


def junit_xml(
    *,
    scenario: str,
    run_id: str,
    criteria: list[Criterion],
    duration_s: float,
    started_at: datetime | None = None,
) -> str:
    """The JUnit document; critical failures carry 'expected <threshold>, measured <value>'."""
    t = tally(criteria)
    counts = {
        "tests": str(t.total),
        "failures": str(t.critical_failed),
        "errors": "0",
        "skipped": str(t.skipped),
        "time": f"{duration_s:.3f}",
    }
    root = ET.Element("testsuites", {"name": "tmws-integration", **counts})
    suite = ET.SubElement(root, "testsuite", {"name": scenario, **counts})
    if started_at is not None:
        suite.set("timestamp", started_at.isoformat(timespec="seconds"))
    props = ET.SubElement(suite, "properties")
    ET.SubElement(props, "property", {"name": "run_id", "value": run_id})
    for c in criteria:
        classname = f"{scenario}.section_{c.section}" if c.section else scenario
        case = ET.SubElement(
            suite, "testcase", {"classname": classname, "name": c.name, "time": "0"}
        )
        if c.skipped:
            ET.SubElement(case, "skipped", {"message": str(c.measured)})
        elif c.failed and c.critical:
            message = f"expected {c.threshold}, measured {c.measured_text()}"
            failure = ET.SubElement(case, "failure", {"message": message, "type": "criterion"})
            failure.text = c.description
        out = ET.SubElement(case, "system-out")
        out.text = c.message()
        if c.failed and not c.critical:
            # Non-critical criteria are reported, not enforced (e.g. latency at ci scale): a
            # <failure> would turn CI red while the run itself passes.
            ET.SubElement(case, "system-err").text = f"non-critical {c.message()}"
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
