"""Screenshot check: headless Chromium renders a run's index.html and timeline.html (Plotly
inline, fault bands, a witness) with no console error and every chart drawn.

Needs the Debian package `chromium` (scripts/test.sh installs it when missing); without it the
test fails, it is not skipped.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from analysis import criteria, metrics
from analysis.coherency import Needs, check_coherency
from analysis.report import write_report
from cluster.nemesis.nemesis import FAULTS_SCHEMA
from tests.analysis.headless import chromium_binary, load_page
from tests.analysis.test_report import _resources, _run

MS = 1_000_000


def _faults(history: pa.Table) -> pa.Table:
    t0 = int(history.column("t_send_ns").to_pylist()[0])
    rows = [
        ("pause:redis@0.2s+0.3s", "pause", "process", "redis", 200, 500),
        ("latency:inst-1/redis=50ms±20ms@0.6s+0.2s", "latency", "network", "inst-1/redis", 600, 800),
        ("drop-invalidations:inst-2=1@0.9s+0.3s", "drop-invalidations", "invalidation", "inst-2", 900, 1200),
        ("clock:swarm-1=+150ms", "clock", "clock", "swarm-1", 0, 1300),
    ]  # fmt: skip
    return pa.Table.from_pylist(
        [
            {"fault": f, "kind": k, "category": c, "target": t,
             "planned_start_ns": t0 + a * MS, "planned_end_ns": t0 + b * MS,
             "requested_ns": t0 + a * MS, "applied_ns": t0 + a * MS,
             "heal_requested_ns": t0 + b * MS, "healed_ns": t0 + b * MS,
             "detail": "test", "error": None}
            for f, k, c, t, a, b in rows
        ],
        schema=FAULTS_SCHEMA,
    )  # fmt: skip


def test_chromium_renders_the_dashboard_and_the_timeline(rows, tmp_path: Path) -> None:
    assert chromium_binary(), "Chromium is missing: apt-get install chromium (scripts/test.sh)"
    history = _run(rows)
    coherency = check_coherency(
        history, needs=Needs(own_writes=0, session_pairs=0, fills=0, stale_pairs=10)
    )
    paths = write_report(
        tmp_path / "run",
        run_id="run-1",
        scenario="coherency",
        history=history,
        criteria=[criteria.success_rate_criterion(history, 95, section="4.3")],
        metrics=metrics.summarize(history),
        resources=_resources(),
        coherency=coherency,
        faults=_faults(history),
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        finished_at=datetime(2026, 1, 1, 0, 1, tzinfo=UTC),
    )
    assert "## Witnesses" in paths.summary.read_text()  # the injected stale read is explained
    for name, least in (("index.html", 4), ("timeline.html", 1)):
        page = paths.out_dir / name
        loaded = load_page(page)
        (tmp_path / f"{name}.png").write_bytes(loaded.screenshot)
        (paths.out_dir / f"{name}.png").write_bytes(loaded.screenshot)
        assert loaded.errors == [], (name, loaded.errors)
        assert loaded.rendered.get("done") and loaded.rendered["graphs"] >= least, loaded.rendered
        assert loaded.screenshot.startswith(b"\x89PNG") and len(loaded.screenshot) > 10_000


def test_the_check_sees_a_script_error(tmp_path: Path) -> None:
    """Negative control: a page that throws and logs an error is reported, not passed."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<html><body><script>console.error('drawn wrong');"
        "throw new Error('boom');</script></body></html>"
    )
    loaded = load_page(page, settle_s=1.0)
    assert any("boom" in e for e in loaded.errors), loaded.errors
    assert any("drawn wrong" in e for e in loaded.errors), loaded.errors
    assert not loaded.rendered.get("done")
