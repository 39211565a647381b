"""Smoke job for the cluster: `python -m cluster --scale ci --out DIR [--address ADDR]`.

Brings everything up, runs warm-up and load from the preset, gathers, prints a summary and the
leak check. Also runs as `ray job submit --working-dir . -- python -m cluster --scale laptop`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

from cluster.deps import require_dependencies

# Before the imports below: a Python without the dependencies stops with one line, not a traceback.
require_dependencies()

from cluster.run import ClusterRun, RunConfig, child_processes, leaked_processes  # noqa: E402
from cluster.topology import PRESETS  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m cluster", description=__doc__)
    parser.add_argument(
        "--scale", default="ci", help=f"preset name ({', '.join(PRESETS)}) or YAML path"
    )
    parser.add_argument("--out", type=Path, default=Path("test-reports") / "cluster-smoke")
    parser.add_argument(
        "--address", default=None, help="Ray address (default: RAY_ADDRESS, else local)"
    )
    parser.add_argument("--agents-per-swarm", type=int, default=None)
    parser.add_argument("--scenario", default="cluster-smoke")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the smoke job; exit code 1 when rows are missing or processes leak."""
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    before = child_processes()
    config = RunConfig(
        scenario=args.scenario,
        preset=args.scale,
        out_dir=args.out,
        address=args.address,
        agents_per_swarm=args.agents_per_swarm,
    )
    started = time.monotonic()
    with ClusterRun(config) as run:
        bring_up_s = time.monotonic() - started
        run.phase("warm-up", run.preset.warmup_workload)
        load_started = time.monotonic()
        reports = run.phase("load", run.preset.workload)
        load_s = time.monotonic() - load_started
        result = run.gather()
        stats = run.instance_stats()
    load_sent = sum(r.sent for r in reports)
    summary = {
        "run_id": run.run_id,
        "bring_up_s": round(bring_up_s, 1),
        "instances": len(run.topology.instance_ids),
        "agents": run.topology.agent_count,
        "rows": result.table.num_rows,
        "sent": result.sent,
        "load_rps": round(load_sent / load_s, 1) if load_s else None,
        "latency_ms": result.latency_summary(),
        "instance_rss_mb": [round(s["rss_bytes"] / 2**20) for s in stats],
        "history": str(result.history_path),
        "timings_s": {k: round(v, 1) for k, v in result.timings.items()},
    }
    print(json.dumps(summary, indent=2))
    leaked = leaked_processes(before)
    if leaked:
        print(f"LEAKED processes: {[(p.pid, p.name()) for p in leaked]}", file=sys.stderr)
    return 0 if not leaked and result.table.num_rows == result.sent else 1


if __name__ == "__main__":
    sys.exit(main())
