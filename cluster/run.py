"""`ClusterRun`: the lifecycle of one run — bring up, run phases, gather, tear down.

    with ClusterRun(RunConfig(scenario="coherency", preset="ci", out_dir=out)) as run:
        run.phase("warm-up", run.preset.warmup_workload)
        run.phase("load", run.preset.workload)
        result = run.gather()          # one pyarrow.Table, merged HDR histograms, Parquet written

This module holds the handles and their order; each job has its own module: settings per
process (`env.py`), instances (`instances.py`), swarms and clocks (`swarms.py`), phases
(`phases.py`), what is gathered and written (`result.py`), bounded Ray calls (`calls.py`), the
leak check (`processes.py`). Teardown stops exactly what the run started, by handle: swarms
(sessions closed), instances (graceful stop, then `ray.kill`), placement groups, the local Ray
(if we started it) and the embedded servers (if we started them).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray

from actors.agents import Endpoint, PhaseReport
from actors.clock import ClockSample
from actors.recorder import merge_outputs
from actors.resource_sampler import ResourceSampler, SamplerThread
from actors.service_instance import InstanceInfo
from actors.workload import Workload
from cluster import instances, swarms
from cluster.calls import RunError, best_effort
from cluster.env import instance_env, swarm_auth_secret, tmws_env
from cluster.infra import SharedInfra, resolve_infra
from cluster.phases import PhaseHandle, as_workload, launch
from cluster.placement import Placement, create_placement
from cluster.processes import child_processes, leaked_processes
from cluster.progress import Progress
from cluster.ray_connect import RayConnection, connect, local_num_cpus
from cluster.result import RunResult
from cluster.topology import ScalePreset, Topology, build_topology, load_preset

#: Re-exported: experiments and tests import these from here.
__all__ = [
    "ClusterRun",
    "PhaseHandle",
    "RunConfig",
    "RunError",
    "RunResult",
    "child_processes",
    "leaked_processes",
]

log = logging.getLogger(__name__)

DEFAULT_OUT = Path("test-reports") / "integration"


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
        #: The TMWS_* settings every process starts from: read from this process once, here.
        self.base_env = dict(config.env) if config.env is not None else tmws_env(os.environ)
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
        preset, timeout_s = self.preset, self.config.ready_timeout_s
        with self.progress.phase("bring-up", total=5, unit="step") as bar:
            self.infra = self._resolve_infra()
            bar.advance()
            required = (
                len(self.topology.instance_ids) * preset.instance_cpus
                + len(self.topology.swarms) * preset.swarm_cpus
            )
            self.ray = connect(
                self.config.address, num_cpus=local_num_cpus(required, preset.local_num_cpus)
            )
            bar.advance()
            self.placement = create_placement(preset, self.run_id, timeout_s)
            bar.advance()
            envs = {i: self.instance_env(i) for i in self.topology.instance_ids}
            self.instances, self.instance_infos = instances.start_instances(
                envs, self.placement, preset.instance_cpus, timeout_s
            )
            bar.advance()
            nemesis = self.config.nemesis
            self.swarms, self.sessions = swarms.start_swarms(
                self.topology,
                self.placement,
                scenario=self.config.scenario,
                endpoints=self.endpoints(),
                auth_secret=swarm_auth_secret(self.base_env, self.config.instance_env),
                clock_skew_ns=nemesis.clock_skew_ns if nemesis else lambda _index: 0,
                num_cpus=preset.swarm_cpus,
                timeout_s=timeout_s,
            )
            self._clock_start = [swarms.clock_sample(s) for s in self.swarms]
            bar.advance()
        if self.config.sample_resources:
            sampler = ResourceSampler(self.run_id, self.infra.database_url, self.infra.redis_url)
            self._sampler = SamplerThread(sampler, self.instance_stats).start()

    def _resolve_infra(self) -> SharedInfra:
        given = self.config.infra
        if given is not None:
            return SharedInfra(given.database_url, given.redis_url, owned=None)
        from service.config import Settings

        # Default: the settings' state folder (.tmws), so servers from `tmws infra up` are reused
        # (and left running); servers started here are stopped at teardown.
        return resolve_infra(Settings.from_env(self.base_env), self.config.state_dir)

    def instance_env(self, instance_id: str) -> dict[str, str]:
        """The TMWS_* settings one instance runs with (`cluster.env.instance_env`)."""
        assert self.infra is not None
        return instance_env(
            self.base_env,
            instance_id,
            database_url=self.infra.database_url,
            redis_url=self.infra.redis_url,
            state_dir=(self.out_dir / ".state").resolve(),
            preset_env=self.preset.instance_env,
            overrides=self.config.instance_env,
            nemesis=self.config.nemesis,
        )

    def endpoints(self) -> tuple[Endpoint, ...]:
        return instances.endpoints(self.instance_infos)

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
        chosen = as_workload(self.preset.workload if workload is None else workload)
        return PhaseHandle(
            name,
            chosen,
            launch(self.swarms, name, chosen),
            agents=self.topology.agent_count,
            status=self.status,
            reports=self.reports,
            progress=self.progress,
        )

    def status(self) -> list[dict[str, Any]]:
        """Live counters of every swarm."""
        return ray.get([s.status.remote() for s in self.swarms], timeout=30)

    # -- faults and health --------------------------------------------------------------------

    def kill_instance(self, index: int) -> str:
        """Kill one instance's process the hard way; Ray restarts it (max_restarts). Returns its id."""
        instance_id = self.instance_infos[index].instance_id
        instances.kill(self.instances[index], instance_id)
        return instance_id

    def refresh_endpoints(self, timeout_s: float = 180.0) -> tuple[Endpoint, ...]:
        """Ask every instance where it serves now (a restarted one comes up on a new port) and
        tell the swarms."""
        self.instance_infos = instances.infos_after_restart(self.instances, timeout_s)
        endpoints = self.endpoints()
        ray.get([s.update_endpoints.remote(endpoints) for s in self.swarms], timeout=30)
        return endpoints

    def health(self, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Every instance's own `/health` (status, redis, postgres, cache counters)."""
        return instances.health(self.instances, timeout_s)

    def wait_healthy(
        self, check: Any = None, timeout_s: float = 60.0, poll_s: float = 0.25
    ) -> list[dict[str, Any]]:
        """Poll `/health` of every instance until `check(body)` holds for all (default: status
        ok); returns the last bodies. Raises `RunError` when the bound passes."""
        return instances.wait_healthy(self.instances, check, timeout_s, poll_s)

    def instance_stats(self) -> list[dict[str, Any]]:
        """CPU%/RSS of every instance process (skips an instance that is restarting)."""
        return instances.resource_stats(self.instances)

    # -- gather -------------------------------------------------------------------------------

    def gather(self, write: bool = True) -> RunResult:
        """Collect every swarm's rows and histograms into one table; write Parquet atomically."""
        outputs, clocks = swarms.drain(self.swarms, self.topology, self._clock_start, self.progress)
        self._outputs.extend(outputs)
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
            result.write(self.out_dir)
        return result

    # -- teardown -----------------------------------------------------------------------------

    def teardown(self) -> None:
        """Stop everything this run started, by handle; safe to call twice."""
        with self.progress.phase("drain", total=None, unit="step"):
            if self._sampler is not None:
                self._sampler.stop()
                self._sampler = None
            if self.swarms:
                best_effort([s.close.remote() for s in self.swarms], 30)
            if self.instances:
                best_effort([a.stop.remote() for a in self.instances], 40)
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
