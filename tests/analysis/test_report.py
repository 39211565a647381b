"""Report folder round trip: parquet, JUnit, metrics.json, summary.md, index.html, recheck."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq

from analysis import criteria, metrics, recheck
from analysis.coherency import Needs, check_coherency
from analysis.report import load_history, load_resources, write_report
from analysis.resources import ResourceBuffer
from analysis.terminal import dashboard_box


def _run(rows):
    r = rows()
    r.write(version=1, send=0, recv=5, agent_id="w", instance_id="i0")
    for i in range(40):
        inst = f"i{i % 3}"
        r.read(
            seen=1,
            send=10 + i * 25,
            recv=14 + i * 25,
            agent_id=f"a{i}",
            instance_id=inst,
            session_id=f"s{i}",
            cache_hit=i % 4 != 0,
            cache_tier="l1",
            tokens_used=30,
            tokens_baseline=400,
            route="infrastructure",
            phase="main",
        )
    r.write(version=2, send=1000, recv=1005, agent_id="w", instance_id="i1")
    r.read(seen=1, send=1010, recv=1012, agent_id="late", instance_id="i2")  # injected stale read
    r.add(op="read", send=1020, recv=1030, success=False, error_code=-32002, error_reason="timeout")
    return r.table()


def _resources() -> pa.Table:
    buf = ResourceBuffer()
    for i in range(12):
        buf.append(
            run_id="r", t_ns=i * 100_000_000, source="i0", cpu_percent=20.0, rss_bytes=200 << 20
        )
        buf.append(run_id="r", t_ns=i * 100_000_000, source="postgres", db_connections=5 + i % 2)
    return pa.Table.from_batches([buf.drain()])


def test_report_round_trip(rows, tmp_path, capsys):
    history = _run(rows)
    # This history has no own-write reads, sessions or fills to speak of: judge the rest only.
    coherency = check_coherency(
        history, needs=Needs(own_writes=0, session_pairs=0, fills=0, stale_pairs=10)
    )
    crit = [
        criteria.success_rate_criterion(history, 95, section="4.3"),
        criteria.hit_rate_criterion(history, 70, section="4.3"),
        criteria.percentile_latency_criterion(history, 95, 250, section="5.1", critical=False),
    ]
    started = datetime(2026, 1, 1, tzinfo=UTC)
    paths = write_report(
        tmp_path / "run",
        run_id="run-1",
        scenario="coherency",
        history=history,
        criteria=crit,
        metrics=metrics.summarize(history),
        resources=_resources(),
        coherency=coherency,
        started_at=started,
        finished_at=started + timedelta(seconds=83),
    )
    assert not list(paths.out_dir.glob(".*tmp"))  # temp files moved into place

    assert pq.read_table(paths.history).equals(history)
    assert load_history(paths.out_dir).equals(history)
    assert load_resources(paths.out_dir).num_rows == 24

    suite = ET.parse(paths.junit).getroot().find("testsuite")
    assert suite.get("name") == "coherency"
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == 3 + len(coherency.criteria)
    failures = {c.get("name"): c.find("failure") for c in cases if c.find("failure") is not None}
    assert set(failures) == {"no_stale_reads"} and int(suite.get("failures")) == 1
    assert "expected = 0, measured 1" in failures["no_stale_reads"].get("message")

    doc = json.loads(paths.metrics.read_text())
    assert doc["passed"] is False and doc["tally"]["critical_failed"] == 1
    stale = {c["name"]: c for c in doc["criteria"]}["no_stale_reads"]
    assert stale["evidence"] == {
        "what": "reads begun after an acked write of their namespace",
        "got": 41,
        "need": 10,
        "enough": True,
    }
    assert stale["verdict"] == "fail" and not stale["insufficient_evidence"]
    assert doc["coherency"]["stale_reads"]["count"] == 1
    assert doc["metrics"]["requests"] == history.num_rows
    assert doc["resources"]["db_connections_max"] == 6

    summary = paths.summary.read_text()
    assert summary.startswith("# coherency: FAILED") and "no_stale_reads" in summary
    assert "41 reads begun after an acked write of their namespace (need ≥ 10)" in summary

    html = paths.index.read_text()
    for plot in ("latency-cdf", "throughput", "hit-rate", "propagation", "resource"):
        assert f'id="plot-{plot}' in html
    # Offline: plotly.js is inline, nothing is fetched (no script src, no external links).
    page = re.sub(r"<script[^>]*>.*?</script>", "", html, flags=re.S)
    assert "<script src" not in html and 'src="http' not in page and 'href="http' not in page
    assert "timeline.html" in html and (paths.out_dir / "timeline.html").is_file()
    assert "TMWS Pattern Execution Integration" in html

    # Re-check from the parquet alone finds the same stale read and exits non-zero.
    assert recheck.main([str(paths.out_dir)]) == 1
    out = capsys.readouterr().out
    assert "stale reads: 1" in out and "Stale Reads:" in out


def test_terminal_box_marks_metrics_from_criteria(rows):
    history = _run(rows)
    summary = metrics.summarize(history)
    crit = [
        criteria.success_rate_criterion(history, 99),
        criteria.token_reduction_criterion(history, 40),
    ]
    box = dashboard_box(scenario="x", criteria=crit, metrics=summary, duration_s=514)
    lines = box.splitlines()
    assert lines[0].startswith("┌") and "8m 34s" in box
    assert len({len(line) for line in lines if line[0] in "│┌├└"}) == 1  # a closed box
    assert any("Requests OK:" in line and "✗" in line for line in lines)
    assert any("Token Reduction:" in line and "✓" in line for line in lines)
    assert any("Throughput:" in line and "–" in line for line in lines)  # not judged here
    assert any(line.startswith("✗ FAIL: success_rate") for line in lines)


def test_load_history_fills_columns_missing_from_older_files(rows, tmp_path):
    history = _run(rows)
    older = history.drop_columns(["phase", "route"])
    pq.write_table(older, tmp_path / "old.parquet")
    loaded = load_history(tmp_path / "old.parquet")
    assert loaded.schema.names == history.schema.names
    assert loaded.column("phase").null_count == history.num_rows
    assert loaded.column("latency_ms").equals(history.column("latency_ms"))
