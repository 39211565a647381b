"""Re-check a recorded run from its Parquet files: `python -m analysis.recheck RUN_DIR`.

Reloads history.parquet, recomputes the metrics and runs the coherency checker (with the content
check when the run tracked content), prints the dashboard box and the coherency summary, and exits
1 when a coherency criterion fails or could not be judged for lack of evidence.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow.compute as pc

from analysis import metrics
from analysis.coherency import MODES, check_coherency
from analysis.content import tracked_rows
from analysis.report import load_history
from analysis.terminal import dashboard_box


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="python -m analysis.recheck", description=__doc__)
    parser.add_argument("run_dir", type=Path, help="run folder (or a history.parquet file)")
    parser.add_argument(
        "--mode", choices=MODES, default="strict", help="cache read mode of the run"
    )
    parser.add_argument(
        "--staleness-bound-ms", type=float, default=None, help="eventual mode: allowed lag"
    )
    args = parser.parse_args(argv)
    history = load_history(args.run_dir)
    scenario = pc.unique(history.column("scenario")).to_pylist() if history.num_rows else []
    report = check_coherency(
        history,
        mode=args.mode,
        staleness_bound_ms=args.staleness_bound_ms,
        content=tracked_rows(history) > 0,
    )
    summary = metrics.summarize(history)
    print(
        dashboard_box(
            scenario=",".join(scenario) or "?",
            criteria=report.criteria,
            metrics=summary,
            duration_s=summary["duration_s"],
            stale_reads=report.stale.count,
        )
    )
    print("\n".join(report.summary_lines()))
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
