"""The one shape every experiment has: parse args → bring up → run phases → gather → check → report.

An experiment is a small object with three hooks (`instance_env`, `drive`, `check`); `main` does
the rest — Ray and the service instances through `cluster.ClusterRun`, the history table, the
resource table, the reports in the run folder, the terminal dashboard, and the leak check at the
end. The exit code is 0 when every critical criterion passed, 1 when one failed (or was skipped
without `--allow-skip NAME`), 2 on bad input.

Scripts run as `python experiments/<name>.py` and as
`ray job submit --working-dir . -- python experiments/<name>.py`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray

from actors import loop_health
from analysis import checks, generator
from analysis.checks import Criterion, Evidence
from analysis.coherency import CoherencyReport
from analysis.metrics import WARMUP_PHASES, summarize
from analysis.report import all_criteria, write_report
from analysis.resources import leak_criteria, resource_criteria
from analysis.schema import concat
from analysis.terminal import print_dashboard
from cluster.nemesis.nemesis import Nemesis
from cluster.nemesis.schedule import Schedule, load_schedule
from cluster.run import ClusterRun, RunConfig, RunResult, child_processes, leaked_processes
from cluster.topology import PRESETS, load_preset
from experiments.support.bugs import add_bug_argument, bug_env, injected_bugs

log = logging.getLogger("experiments")

DEFAULT_OUT_ROOT = Path("test-reports") / "integration"
#: Key of `drive`'s facts holding history record batches recorded on the driver (not by swarms).
DRIVER_BATCHES = "driver_batches"
SCALES = tuple(PRESETS)


@dataclass
class Outcome:
    """What an experiment's `check` concluded from the recorded rows."""

    criteria: list[Criterion]
    metrics: dict[str, Any] = field(default_factory=dict)
    coherency: CoherencyReport | None = None


class Experiment:
    """One scenario of the integration test plan; subclasses set the names and override hooks."""

    #: file and suite name, e.g. "coherency"
    scenario: str = ""
    #: plan section, e.g. "4.3"
    section: str = ""
    #: one line for --help and reports
    title: str = ""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Scenario-specific options (none by default)."""

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        """Extra TMWS_* settings for every service instance (none by default)."""
        return {}

    def agent_count(self, args: argparse.Namespace) -> int | None:
        """How many agents the scenario wants in total (None: the preset's); the runner
        rounds up to a whole number per swarm."""
        return None

    #: Phases whose timings no criterion judges: a load generator saturated only there does not
    #: make the timing criteria not measurable (`analysis.generator`).
    untimed_phases: tuple[str, ...] = WARMUP_PHASES

    #: True: the experiment starts the nemesis itself (`run.config.nemesis.start(run)`, e.g. at
    #: its load phase); False: the schedule's clock starts when the run is up.
    starts_nemesis: bool = False

    def nemesis_schedule(self, args: argparse.Namespace) -> Schedule | None:
        """The fault schedule of this run (`--nemesis`), or None."""
        return load_schedule(args.nemesis) if args.nemesis else None

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        """Run the phases (and faults); return facts for `check` (e.g. fault times)."""
        raise NotImplementedError

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        """Judge the plan's criteria from the recorded rows."""
        raise NotImplementedError


def build_parser(experiment: Experiment) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=f"experiments/{experiment.scenario}.py",
        description=f"[{experiment.section}] {experiment.title}",
    )
    parser.add_argument("--scale", default="ci", help=f"preset: {', '.join(SCALES)} or a YAML path")
    parser.add_argument(
        "--out", type=Path, default=None, help=f"run folder (default {DEFAULT_OUT_ROOT}/<scenario>)"
    )
    parser.add_argument(
        "--address", default=None, help="Ray address (default RAY_ADDRESS or local)"
    )
    parser.add_argument(
        "--duration", type=float, default=None, help="soak: stretch the load phase to this many s"
    )
    parser.add_argument("--seed", type=int, default=0, help="workload seed")
    parser.add_argument("--run-id", default=None, help="run id (default: scenario + random)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument(
        "--allow-skip",
        action="append",
        default=[],
        metavar="NAME",
        help="accept that critical criterion NAME is skipped (repeatable); "
        "any other skipped critical criterion fails the run",
    )
    add_bug_argument(parser)
    parser.add_argument(
        "--nemesis",
        default=None,
        metavar="SCHEDULE|FILE.yaml",
        help="fault schedule, e.g. 'pause:redis@10s+5s, partition:inst-1/redis@20s+3s' or a "
        "configs/nemesis/*.yaml file (see README, 'Nemesis'); faults.parquet records each fault",
    )
    experiment.add_arguments(parser)
    return parser


def run_experiment(
    experiment: Experiment,
    argv: Sequence[str] | None = None,
    *,
    infra: Any = None,
    state_dir: Path | None = None,
) -> tuple[int, Path]:
    """Run one experiment end to end; (exit code, run folder). Tests pass their `infra`."""
    args = build_parser(experiment).parse_args(argv)
    bugs = injected_bugs(args)
    out = (args.out or DEFAULT_OUT_ROOT / experiment.scenario).resolve()
    before = child_processes()
    reused_ray = ray.is_initialized()  # a Ray started before us keeps its idle workers
    started_at = datetime.now(UTC)
    wanted = experiment.agent_count(args)
    per_swarm = None
    if wanted is not None:
        swarms = load_preset(args.scale).swarms
        per_swarm = max(1, -(-wanted // swarms))
    nemesis = _nemesis(experiment, args)
    config = RunConfig(
        scenario=experiment.scenario,
        preset=args.scale,
        out_dir=out,
        run_id=args.run_id,
        address=args.address,
        instance_env={**experiment.instance_env(args), **bug_env(bugs)},
        infra=infra,
        state_dir=state_dir,
        progress=not args.quiet,
        agents_per_swarm=per_swarm,
        nemesis=nemesis,
    )
    try:
        with ClusterRun(config) as run:
            if nemesis is not None and not experiment.starts_nemesis:
                nemesis.start(run)
            try:
                facts = experiment.drive(run, args)
            finally:
                if nemesis is not None:
                    nemesis.stop()  # heals whatever is still applied
            published = _ray_metrics_published(run)
            result = run.gather()
            run_id = run.run_id
            phase_reports = list(run.reports)
    finally:
        if nemesis is not None:
            nemesis.close()
    if nemesis is not None:
        facts["nemesis"] = nemesis.facts()
    driver_batches = facts.pop(DRIVER_BATCHES, [])
    if driver_batches:
        driver_rows = concat(driver_batches)
        result.table = pa.concat_tables([result.table, driver_rows])
        result.sent += driver_rows.num_rows
    finished_at = datetime.now(UTC)
    outcome = experiment.check(result, facts, args)
    criteria = list(outcome.criteria)
    criteria += _resource_criteria(result)
    leaked = leaked_processes(before, reused_ray=reused_ray)
    criteria.append(
        checks.holds(
            "no_leaked_processes",
            not leaked,
            measured=", ".join(f"{p.pid}:{p.name()}" for p in leaked) or "none",
            expectation="every process the run started is gone",
            evidence=Evidence("child-process scans after teardown", 1, 1),
            section="1.1",
        )
    )
    judged = checks.allow_skips(all_criteria(criteria, outcome.coherency), args.allow_skip)
    # A saturated generator measured itself: its timing criteria are not measurable, not passed.
    judged = generator.judge_timing(judged, phase_reports, experiment.untimed_phases)
    metrics = {
        **summarize(result.table),
        **outcome.metrics,
        "clocks": result.clocks,
        "facts": facts,
        # Requests the swarms handed to ray.util.metrics (the Ray dashboard's view of the run).
        "ray_metrics_published": published,
        "load_generator": {
            **generator.summary(phase_reports, experiment.untimed_phases),
            "thresholds": {
                "loop_lag_ms_p99": loop_health.SATURATED_LAG_MS,
                "cpu_percent": loop_health.SATURATED_CPU_PERCENT,
            },
        },
    }
    metrics["injected_bugs"] = bugs
    write_report(
        out,
        run_id=run_id,
        scenario=experiment.scenario,
        history=result.table,
        criteria=judged,
        metrics=metrics,
        resources=result.resources,
        coherency=outcome.coherency,
        faults=nemesis.table() if nemesis is not None else None,
        started_at=started_at,
        finished_at=finished_at,
    )
    print_dashboard(
        scenario=experiment.scenario,
        criteria=judged,
        metrics=metrics,
        duration_s=(finished_at - started_at).total_seconds(),
        stale_reads=outcome.coherency.stale.count if outcome.coherency else None,
    )
    print(f"reports: {out}")
    return (0 if checks.tally(judged).ok else 1), out


def _nemesis(experiment: Experiment, args: argparse.Namespace) -> Nemesis | None:
    """The run's nemesis, its schedule checked against the preset (bad input: `ValueError`)."""
    schedule = experiment.nemesis_schedule(args)
    if schedule is None:
        return None
    preset = load_preset(args.scale)
    schedule.validate(preset.instances, preset.swarms)
    return Nemesis(schedule, seed=args.seed)


def run_load(
    run: ClusterRun, name: str, workload: Mapping[str, Any], duration_s: float | None = None
) -> list[str]:
    """Run the load phase once, or (soak, `--duration`) again and again as `name-1`, `name-2`, …
    until `duration_s` has passed; returns the phase names that ran."""
    if not duration_s:
        run.phase(name, workload)
        return [name]
    names: list[str] = []
    deadline = time.monotonic() + duration_s
    while not names or time.monotonic() < deadline:
        names.append(f"{name}-{len(names) + 1}")
        run.phase(names[-1], {**workload, "seed": int(workload.get("seed", 0)) + len(names)})
    return names


def fault_target(run: ClusterRun) -> Any:
    """The embedded servers a fault experiment may stop and restart, or None.

    Servers given by URL (docker compose, a cloud cluster) are never stopped by us: experiments
    that need to take Redis or PostgreSQL away report themselves skipped there.
    """
    given = run.config.infra
    if given is not None and hasattr(given, "stop_redis"):
        return given
    return run.infra.owned if run.infra is not None else None


def _resource_criteria(result: RunResult) -> list[Criterion]:
    """Section 9 resource bands and the soak leak check: reported, not gating, on shared cores."""
    if result.resources is None or result.resources.num_rows == 0:
        return []
    instances = max(1, len(pc.unique(result.table.column("instance_id")).drop_null()))
    judged = resource_criteria(result.resources, instances=instances)
    judged += leak_criteria(result.resources)
    return [dataclasses.replace(c, critical=False) for c in judged]


def _ray_metrics_published(run: ClusterRun) -> int | None:
    """Samples the swarms published as Ray metrics (`actors.ray_metrics`); None if unknown."""
    try:
        return sum(int(s.get("metrics_published", 0)) for s in run.status())
    except ray.exceptions.RayError:
        return None


def _exit_on_sigterm(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main(experiment: Experiment, argv: Sequence[str] | None = None) -> int:
    """Script entry point: exit code 0 pass, 1 a critical criterion failed, 2 bad input."""
    logging.basicConfig(
        level=os.environ.get("TMWS_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # `timeout` (run_integration_tests.sh) sends SIGTERM: exit through the context managers so
    # the run still stops everything it started.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        code, _ = run_experiment(experiment, argv)
    except (ValueError, FileNotFoundError) as exc:
        print(f"{experiment.scenario}: error: {exc}", file=sys.stderr)
        return 2
    return code
