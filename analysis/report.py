"""Write a run's report folder atomically, and load a run's tables back for re-checking.

Files: history.parquet, resources.parquet (if sampled), junit.xml, metrics.json, summary.md,
index.html. Each is written to a temporary file in the same folder and moved into place with
`os.replace`, so a reader never sees a half-written report.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from analysis.checks import Criterion, tally
from analysis.coherency import CoherencyReport
from analysis.html import render_dashboard
from analysis.junit import junit_xml
from analysis.markdown import summary_markdown
from analysis.resources import RESOURCE_SCHEMA, resource_summary
from analysis.schema import HISTORY_SCHEMA
from analysis.stages import summary as latency_breakdown
from analysis.timeline import render_timeline
from analysis.witness import stale_rows, witness_markdown, witness_points, witnesses

HISTORY_FILE = "history.parquet"
RESOURCES_FILE = "resources.parquet"
FAULTS_FILE = "faults.parquet"
TIMELINE_FILE = "timeline.html"


@dataclass(frozen=True)
class ReportPaths:
    """Where each report file of a run went."""

    out_dir: Path
    history: Path
    resources: Path | None
    junit: Path
    metrics: Path
    summary: Path
    index: Path


def _atomic(path: Path, write: Callable[[Path], None]) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _write_text(path: Path, text: str) -> Path:
    return _atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _write_parquet(path: Path, table: pa.Table) -> Path:
    return _atomic(path, lambda tmp: pq.write_table(table, tmp))


def jsonable(value: Any) -> Any:
    """Plain JSON types: numpy scalars unwrapped, NaN/inf → None, tuples → lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def all_criteria(criteria: list[Criterion], coherency: CoherencyReport | None) -> list[Criterion]:
    """The run's criteria followed by the coherency checker's (a name already listed wins, so a
    caller may pass the coherency criteria in already, e.g. with allowed skips marked)."""
    names = {c.name for c in criteria}
    extra = [] if coherency is None else [c for c in coherency.criteria if c.name not in names]
    return [*criteria, *extra]


def write_report(
    out_dir: Path,
    *,
    run_id: str,
    scenario: str,
    history: pa.Table,
    criteria: list[Criterion],
    metrics: dict[str, Any],
    resources: pa.Table | None = None,
    coherency: CoherencyReport | None = None,
    faults: pa.Table | None = None,
    started_at: datetime,
    finished_at: datetime,
) -> ReportPaths:
    """Write every report file into `out_dir` (created if needed); coherency criteria are included."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    judged = all_criteria(criteria, coherency)
    if "latency_breakdown" not in metrics:
        metrics = {**metrics, "latency_breakdown": latency_breakdown(history)}
    duration_s = (finished_at - started_at).total_seconds()
    res_summary = (
        resource_summary(resources) if resources is not None and resources.num_rows else None
    )
    t = tally(judged)
    document = {
        "run_id": run_id,
        "scenario": scenario,
        "started_at": started_at,
        "finished_at": finished_at,
        "duration_s": duration_s,
        "passed": t.ok,
        "tally": {
            "total": t.total,
            "passed": t.passed,
            "failed": t.failed,
            "skipped": t.skipped,
            "critical_failed": t.critical_failed,
            "skipped_not_allowed": t.skipped_not_allowed,
            "insufficient_evidence": t.insufficient,
            "not_measurable": t.not_measurable,
        },
        "allowed_skips": sorted(c.name for c in judged if c.skipped and c.skip_allowed),
        "criteria": [c.to_dict() for c in judged],
        "metrics": metrics,
        "coherency": None if coherency is None else coherency.to_dict(),
        "resources": res_summary,
    }
    fault_list = faults.to_pylist() if faults is not None else None
    if faults is not None:
        _write_parquet(out_dir / FAULTS_FILE, faults)
    found = witnesses(history, coherency, fault_list)
    _write_text(
        out_dir / TIMELINE_FILE,
        render_timeline(
            run_id=run_id,
            scenario=scenario,
            history=history,
            faults=fault_list,
            witnesses=witness_points(found),
            stale_rows=stale_rows(coherency),
        ),
    )
    resources_path = None
    if resources is not None:
        resources_path = _write_parquet(out_dir / RESOURCES_FILE, resources)
    return ReportPaths(
        out_dir=out_dir,
        history=_write_parquet(out_dir / HISTORY_FILE, history),
        resources=resources_path,
        junit=_write_text(
            out_dir / "junit.xml",
            junit_xml(
                scenario=scenario,
                run_id=run_id,
                criteria=judged,
                duration_s=duration_s,
                started_at=started_at,
            ),
        ),
        metrics=_write_text(
            out_dir / "metrics.json", json.dumps(jsonable(document), indent=2) + "\n"
        ),
        summary=_write_text(
            out_dir / "summary.md",
            summary_markdown(
                scenario=scenario,
                run_id=run_id,
                criteria=judged,
                metrics=metrics,
                duration_s=duration_s,
                coherency=coherency,
                resources=res_summary,
            )
            + witness_markdown(found),
        ),
        index=_write_text(
            out_dir / "index.html",
            render_dashboard(
                run_id=run_id,
                scenario=scenario,
                history=history,
                criteria=judged,
                metrics=metrics,
                duration_s=duration_s,
                resources=resources,
                coherency=coherency,
                faults=fault_list,
            ),
        ),
    )


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Columns in schema order; columns missing from older files become nulls."""
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema.with_metadata(None))


def load_history(path: Path | str) -> pa.Table:
    """A run's history table, from its folder or its history.parquet."""
    path = Path(path)
    return _conform(pq.read_table(path / HISTORY_FILE if path.is_dir() else path), HISTORY_SCHEMA)


def load_resources(path: Path | str) -> pa.Table | None:
    """A run's resource samples, or None when the run sampled none."""
    path = Path(path)
    file = path / RESOURCES_FILE if path.is_dir() else path
    return _conform(pq.read_table(file), RESOURCE_SCHEMA) if file.exists() else None
