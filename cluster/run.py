"""`ClusterRun`: bring up infra + Ray + service instances + swarms, run phases, gather, tear down.

    with ClusterRun(RunConfig(scenario="coherency", preset="ci", out_dir=out)) as run:
        run.phase("warm-up", run.preset.warmup_workload)
        run.phase("load", run.preset.workload)
        result = run.gather()          # one pyarrow.Table, merged HDR histograms, Parquet written

Teardown stops exactly what the run started, by handle: swarms (sessions closed), instances
(graceful stop, then `ray.kill`), placement groups, the local Ray (if we started it) and the
embedded servers (if we started them).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import ray
from hdrh.histogram import HdrHistogram

from actors.agent_swarm import AgentSwarm
from actors.agents import Endpoint, PhaseReport, SwarmConfig
from actors.clock import ClockOffset, ClockSample, clock_report, measure, stamp
from actors.recorder import merge_outputs
from actors.resource_sampler import ResourceSampler, SamplerThread
from actors.service_instance import InstanceInfo, ServiceInstance
from actors.workload import Workload
from analysis import hdr
from cluster.infra import SharedInfra, resolve_infra
from cluster.placement import Placement, create_placement
from cluster.progress import Progress
from cluster.ray_connect import RayConnection, connect, local_num_cpus
from cluster.topology import ScalePreset, Topology, build_topology, load_preset

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("test-reports") / "integration"
_STATUS_POLL_S = 0.5


class RunError(RuntimeError):
    """A run could not be brought up, or lost requests."""


@dataclass
class RunConfig:
    """What to run: scenario name, scale, where to write, which Ray and which servers."""

    scenario: str
    preset: ScalePreset | str = "ci"
    out_dir: Path = DEFAULT_OUT
    run_id: str | None = None
    address: str | None = None
    #: TMWS_* settings for the instances (defaults: the TMWS_* variables of this process).
    env: Mapping[str, str] | None = None
    #: Extra TMWS_* overrides for every instance (e.g. TMWS_CACHE_MODE=eventual).
    instance_env: Mapping[str, str] = field(default_factory=dict)
    #: Servers to use as they are (tests pass their `infra` fixture); else resolved from env.
    infra: Any = None
    state_dir: Path | None = None
    agents_per_swarm: int | None = None
    progress: bool = True
    #: A fault schedule (`cluster.nemesis.Nemesis`): proxied server URLs, skewed swarm clocks.
    nemesis: Any = None
    sample_resources: bool = True
    ready_timeout_s: float = 300.0


@dataclass
class RunResult:
    """What `gather` returns: the history table, merged histograms and where files went."""

    table: pa.Table
    histograms: dict[str, HdrHistogram]
    sent: int
    history_path: Path | None = None
    resources: pa.Table | None = None
    resources_path: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)
    #: Per swarm: its clock offset to the driver, measured at start and at gather.
    clocks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def latency_summary(self, key: str = "all") -> dict[str, float | int | None]:
        hist = self.histograms.get(key)
        return hdr.summary_ms(hist) if hist is not None else {"count": 0}


class ClusterRun:
    """One run of the simulation cluster; use as a context manager."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        preset = config.preset
        self.preset = preset if isinstance(preset, ScalePreset) else load_preset(preset)
        self.run_id = config.run_id or f"{config.scenario}-{uuid.uuid4().hex[:6]}"
        self.out_dir = Path(config.out_dir)
        self.progress = Progress(enabled=config.progress)
        self.topology: Topology = build_topology(self.preset, self.run_id, config.agents_per_swarm)
        self.infra: SharedInfra | None = None
        self.ray: RayConnection | None = None
        self.placement: Placement | None = None
        self.instances: list[Any] = []
        self.instance_infos: list[InstanceInfo] = []
        self.swarms: list[Any] = []
        self.reports: list[PhaseReport] = []
        self.sessions: dict[str, int] = {}
        self._sampler: SamplerThread | None = None
        self._outputs: list[Any] = []
        self._clock_start: list[ClockSample] = []

    # -- bring-up -----------------------------------------------------------------------------

    def __enter__(self) -> ClusterRun:
        try:
            self.bring_up()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def bring_up(self) -> None:
        """Infra, Ray, placement groups, instances (serving), swarms (sessions open)."""
        with self.progress.phase("bring-up", total=5, unit="step") as bar:
            self.infra = self._resolve_infra()
            bar.advance()
            required = (
                len(self.topology.instance_ids) * self.preset.instance_cpus
                + len(self.topology.swarms) * self.preset.swarm_cpus
            )
            self.ray = connect(
                self.config.address,
                num_cpus=local_num_cpus(required, self.preset.local_num_cpus),
            )
            bar.advance()
            self.placement = create_placement(self.preset, self.run_id, self.config.ready_timeout_s)
            bar.advance()
            self._start_instances()
            bar.advance()
            self._start_swarms()
            bar.advance()
        if self.config.sample_resources:
            self._start_sampler()

    def _resolve_infra(self) -> SharedInfra:
        given = self.config.infra
        if given is not None:
            return SharedInfra(given.database_url, given.redis_url, owned=None)
        from service.config import Settings

        env = dict(self.config.env if self.config.env is not None else _tmws_env(os.environ))
        # Default: the settings' state folder (.tmws), so servers from `tmws infra up` are reused
        # (and left running); servers started here are stopped at teardown.
        return resolve_infra(Settings.from_env(env), self.config.state_dir)

    def instance_env(self, instance_id: str) -> dict[str, str]:
        """The TMWS_* settings one instance runs with."""
        assert self.infra is not None
        base = dict(self.config.env if self.config.env is not None else _tmws_env(os.environ))
        base.update(
            {
                "TMWS_DATABASE_URL": self.infra.database_url,
                "TMWS_REDIS_URL": self.infra.redis_url,
                "TMWS_INSTANCE_ID": instance_id,
                "TMWS_STATE_DIR": str((self.out_dir / ".state").resolve()),
            }
        )
        base.update(self.preset.instance_env)
        base.update(self.config.instance_env)
        if self.config.nemesis is not None:
            base.update(self.config.nemesis.route(instance_id, base))
        return base

    def _start_instances(self) -> None:
        assert self.placement is not None
        for index, instance_id in enumerate(self.topology.instance_ids):
            actor = ServiceInstance.options(
                name=None,
                num_cpus=self.preset.instance_cpus,
                scheduling_strategy=self.placement.for_instance(index),
            ).remote(self.instance_env(instance_id))
            self.instances.append(actor)
        refs = [a.start.remote() for a in self.instances]
        self.instance_infos = _get_all(
            refs, self.config.ready_timeout_s, "service instances to serve"
        )
        for info in self.instance_infos:
            log.info(
                "instance %s at %s on node %s (%.1fs)",
                info.instance_id,
                info.url,
                info.node_id,
                info.startup_s,
            )

    def endpoints(self) -> tuple[Endpoint, ...]:
        return tuple(Endpoint(i.instance_id, i.ws_url, i.node_id) for i in self.instance_infos)

    def _start_swarms(self) -> None:
        assert self.placement is not None and self.infra is not None
        auth_secret = (self.config.env or _tmws_env(os.environ)).get("TMWS_AUTH_SECRET") or None
        auth_secret = self.config.instance_env.get("TMWS_AUTH_SECRET", auth_secret)
        for index, spec in enumerate(self.topology.swarms):
            config = SwarmConfig(
                swarm_id=spec.swarm_id,
                run_id=self.run_id,
                scenario=self.config.scenario,
                agent_ids=spec.agent_ids,
                home_instances=spec.home_instances,
                endpoints=self.endpoints(),
                auth_secret=auth_secret,
                agent_slots=spec.agent_slots,
                clock_skew_ns=self.config.nemesis.clock_skew_ns(index)
                if self.config.nemesis
                else 0,
            )
            actor = AgentSwarm.options(
                num_cpus=self.preset.swarm_cpus,
                scheduling_strategy=self.placement.for_swarm(index),
            ).remote(config)
            self.swarms.append(actor)
        counts = _get_all(
            [s.connect_all.remote(self.config.ready_timeout_s) for s in self.swarms],
            self.config.ready_timeout_s + 10,
            "agents to open sessions",
        )
        total: dict[str, int] = {}
        for c in counts:
            for instance_id, n in c.items():
                total[instance_id] = total.get(instance_id, 0) + n
        self.sessions = total
        self._clock_start = [self._clock_sample(s) for s in self.swarms]
        connected = sum(total.values())
        if connected < self.topology.agent_count:
            log.warning(
                "only %d of %d agents opened a session", connected, self.topology.agent_count
            )

    def _start_sampler(self) -> None:
        assert self.infra is not None
        sampler = ResourceSampler(self.run_id, self.infra.database_url, self.infra.redis_url)
        self._sampler = SamplerThread(sampler, self.instance_stats).start()

    # -- phases -------------------------------------------------------------------------------

    def phase(
        self, name: str, workload: Workload | Mapping[str, Any] | None = None
    ) -> list[PhaseReport]:
        """Run one phase on every swarm and wait; the rate of an open-loop workload is split evenly."""
        return self.start_phase(name, workload).wait()

    def start_phase(
        self, name: str, workload: Workload | Mapping[str, Any] | None = None
    ) -> PhaseHandle:
        """Start a phase on every swarm without waiting (to inject faults while it runs)."""
        if workload is None:
            workload = self.preset.workload
        if not isinstance(workload, Workload):
            workload = Workload.from_dict(workload)
        share = 1.0 / len(self.swarms)
        refs = [s.run_phase.remote(name, workload, share) for s in self.swarms]
        return PhaseHandle(self, name, workload, refs)

    def status(self) -> list[dict[str, Any]]:
        """Live counters of every swarm."""
        return ray.get([s.status.remote() for s in self.swarms], timeout=30)

    # -- faults -------------------------------------------------------------------------------

    def kill_instance(self, index: int) -> str:
        """Kill one instance's process the hard way; Ray restarts it (max_restarts). Returns its id."""
        instance_id = self.instance_infos[index].instance_id
        log.warning("killing instance %s (Ray will restart it)", instance_id)
        ray.kill(self.instances[index], no_restart=False)
        return instance_id

    def refresh_endpoints(self, timeout_s: float = 180.0) -> tuple[Endpoint, ...]:
        """Ask every instance where it serves now (a restarted one comes up on a new port) and
        tell the swarms."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                remaining = max(1.0, deadline - time.monotonic())
                self.instance_infos = _get_all(
                    [a.info.remote() for a in self.instances],
                    remaining,
                    "instances after a restart",
                )
                break
            except ray.exceptions.RayActorError:
                # A restarting actor rejects calls until it is alive again; bounded by the deadline.
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)
        endpoints = self.endpoints()
        ray.get([s.update_endpoints.remote(endpoints) for s in self.swarms], timeout=30)
        return endpoints

    def health(self, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Every instance's own `/health` (status, redis, postgres, cache counters)."""
        return _get_all([a.health.remote() for a in self.instances], timeout_s, "instance health")

    def wait_healthy(
        self, check: Any = None, timeout_s: float = 60.0, poll_s: float = 0.25
    ) -> list[dict[str, Any]]:
        """Poll `/health` of every instance until `check(body)` holds for all (default: status
        ok); returns the last bodies. Raises `RunError` when the bound passes."""
        check = check or (lambda body: body.get("status") == "ok")
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                bodies = self.health()
            except (ray.exceptions.RayError, RunError):
                bodies = []
            if bodies and all(check(b) for b in bodies):
                return bodies
            if time.monotonic() >= deadline:
                raise RunError(f"instances not healthy within {timeout_s:.0f}s: {bodies}")
            time.sleep(poll_s)  # polling an external condition, bounded by the deadline

    def instance_stats(self) -> list[dict[str, Any]]:
        """CPU%/RSS of every instance process (skips an instance that is restarting)."""
        refs = [a.stats.remote() for a in self.instances]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
        out = []
        for ref in ready:
            try:
                out.append(ray.get(ref))
            except ray.exceptions.RayError:
                continue
        return out

    # -- gather -------------------------------------------------------------------------------

    def gather(self, write: bool = True) -> RunResult:
        """Collect every swarm's rows and histograms into one table; write Parquet atomically."""
        clocks: dict[str, dict[str, Any]] = {}
        with self.progress.phase("gather", total=len(self.swarms), unit="swarm") as bar:
            for index, swarm in enumerate(self.swarms):
                start = self._clock_start[index] if index < len(self._clock_start) else None
                end = self._clock_sample(swarm)
                output = ray.get(swarm.drain.remote(), timeout=120)
                # Rows go onto the driver's clock in the checker: stamp this swarm's offset.
                output.batch = stamp(output.batch, ClockOffset.over_run(start or end, end))
                clocks[self.topology.swarms[index].swarm_id] = clock_report(start or end, end)
                self._outputs.append(output)
                bar.advance()
        table, histograms = merge_outputs(self._outputs)
        sent = sum(r.sent for r in self.reports)
        result = RunResult(
            table, histograms, sent, timings=dict(self.progress.timings), clocks=clocks
        )
        if self._sampler is not None:
            result.resources = self._sampler.stop()
            self._sampler = None
        if table.num_rows != sent:
            raise RunError(f"{sent} requests sent but {table.num_rows} rows gathered")
        if write:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            result.history_path = write_parquet_atomic(table, self.out_dir / "history.parquet")
            if result.resources is not None:
                result.resources_path = write_parquet_atomic(
                    result.resources, self.out_dir / "resources.parquet"
                )
            write_json_atomic(
                {k: hdr.encode(h).decode() for k, h in histograms.items()},
                self.out_dir / "latency_hdr.json",
            )
        return result

    @staticmethod
    def _clock_sample(swarm: Any) -> ClockSample:
        """NTP-style exchange with one swarm through Ray (`actors.clock`)."""
        return measure(lambda: ray.get(swarm.clock.remote(), timeout=30), time.time_ns)

    # -- teardown -----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Stop everything this run started, by handle; safe to call twice."""
        with self.progress.phase("drain", total=None, unit="step"):
            if self._sampler is not None:
                self._sampler.stop()
                self._sampler = None
            if self.swarms:
                _best_effort([s.close.remote() for s in self.swarms], 30)
            if self.instances:
                _best_effort([a.stop.remote() for a in self.instances], 40)
            for actor in self.swarms + self.instances:
                try:
                    ray.kill(actor, no_restart=True)
                except Exception as exc:  # already dead, or Ray already gone
                    log.debug("kill failed: %s", exc)
            self.swarms, self.instances = [], []
            if self.placement is not None:
                self.placement.remove()
                self.placement = None
            if self.ray is not None and self.ray.started_local:
                self.ray.shutdown()
            self.ray = None
            if self.infra is not None:
                self.infra.stop()
                self.infra = None


class PhaseHandle:
    """A running phase: `wait()` shows progress until every swarm reports, then checks counts."""

    def __init__(self, run: ClusterRun, name: str, workload: Workload, refs: list[Any]) -> None:
        self.run = run
        self.name = name
        self.workload = workload
        self.refs = refs
        agents = run.topology.agent_count
        if workload.rate is not None:
            self.expected = int(workload.rate.expected_count())
        else:
            self.expected = agents * (
                workload.requests_per_agent_max or workload.requests_per_agent
            )
        self.started = time.monotonic()
        self.reports: list[PhaseReport] | None = None

    def recorded(self) -> int:
        """Rows recorded so far across swarms (all phases)."""
        return sum(s["recorded"] for s in self.run.status())

    def wait_until_recorded(self, rows: int, timeout_s: float = 60.0) -> int:
        """Block until this phase has recorded `rows` rows (or it ended); returns the count."""
        base = sum(r.recorded for r in self.run.reports)
        deadline = time.monotonic() + timeout_s
        pending = list(self.refs)
        while True:
            done = sum(s["recorded"] for s in self.run.status()) - base
            if done >= rows or not pending:
                return done
            if time.monotonic() >= deadline:
                raise RunError(f"phase {self.name}: only {done} of {rows} rows within {timeout_s}s")
            # Waiting on the phase itself paces the poll and ends it early if the phase finishes.
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)

    def wait(self, timeout_s: float | None = None) -> list[PhaseReport]:
        """Block until the phase ends (bounded by the workload's max duration plus a grace)."""
        if self.reports is not None:
            return self.reports
        bound = timeout_s or self.workload.max_duration_s + self.workload.request_timeout_s + 60
        deadline = time.monotonic() + bound
        base = sum(r.recorded for r in self.run.reports)
        with self.run.progress.phase(self.name, total=self.expected) as bar:
            pending = list(self.refs)
            while pending:
                if time.monotonic() >= deadline:
                    raise RunError(f"phase {self.name} did not finish within {bound:.0f}s")
                # The wait on the phase refs is the pacing: it returns as soon as all are done.
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=_STATUS_POLL_S)
                try:
                    status = self.run.status()
                except ray.exceptions.RayError:
                    continue
                done = sum(s["recorded"] for s in status) - base
                errors = sum(s["reconnects"] for s in status)
                elapsed = max(time.monotonic() - self.started, 1e-3)
                bar.update_to(max(done, 0), rps=f"{done / elapsed:.0f}", reconnects=errors)
        self.reports = ray.get(self.refs)
        self.run.reports.extend(self.reports)
        lost = [r for r in self.reports if r.sent != r.recorded]
        if lost:
            raise RunError(f"phase {self.name}: requests without rows in {lost}")
        return self.reports


def _tmws_env(env: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("TMWS_")}


def _get_all(refs: list[Any], timeout_s: float, what: str) -> list[Any]:
    _ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        raise RunError(f"timed out after {timeout_s:.0f}s waiting for {what}")
    return ray.get(refs)


def _best_effort(refs: list[Any], timeout_s: float) -> None:
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            log.debug("teardown call failed: %s", exc)


def write_parquet_atomic(table: pa.Table, path: Path) -> Path:
    """Write to a temp file in the same folder, then `os.replace` (readers never see half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    os.replace(tmp, path)
    return path


def write_json_atomic(payload: Any, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)
    return path


def child_processes() -> set[int]:
    """Pids of every live descendant of this process."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def leaked_processes(before: set[int], timeout_s: float = 30.0) -> list[psutil.Process]:
    """Descendants started since `before` that are still alive after waiting up to `timeout_s`."""
    new = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    _, alive = psutil.wait_procs(new, timeout=timeout_s)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
