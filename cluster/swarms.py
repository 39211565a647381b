"""The run's agent swarms as a group: start with sessions open, clock exchanges, drain.

Rows are stamped at gather with each swarm's clock offset to the driver (`actors.clock`), so
the checker reads every row on the driver's clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import ray

from actors.agent_swarm import AgentSwarm
from actors.agents import Endpoint, SwarmConfig
from actors.clock import ClockOffset, ClockSample, clock_report, measure, stamp
from cluster.calls import get_all
from cluster.placement import Placement
from cluster.progress import Progress
from cluster.topology import Topology

log = logging.getLogger(__name__)


def start_swarms(
    topology: Topology,
    placement: Placement,
    *,
    scenario: str,
    endpoints: tuple[Endpoint, ...],
    auth_secret: str | None,
    clock_skew_ns: Callable[[int], int],
    num_cpus: float,
    timeout_s: float,
) -> tuple[list[Any], dict[str, int]]:
    """One actor per swarm of the topology, once their agents opened sessions; sessions per
    instance id."""
    swarms = []
    for index, spec in enumerate(topology.swarms):
        config = SwarmConfig(
            swarm_id=spec.swarm_id,
            run_id=topology.run_id,
            scenario=scenario,
            agent_ids=spec.agent_ids,
            home_instances=spec.home_instances,
            endpoints=endpoints,
            auth_secret=auth_secret,
            agent_slots=spec.agent_slots,
            clock_skew_ns=clock_skew_ns(index),
        )
        actor = AgentSwarm.options(
            num_cpus=num_cpus, scheduling_strategy=placement.for_swarm(index)
        ).remote(config)
        swarms.append(actor)
    counts = get_all(
        [s.connect_all.remote(timeout_s) for s in swarms], timeout_s + 10, "agents to open sessions"
    )
    sessions: dict[str, int] = {}
    for c in counts:
        for instance_id, n in c.items():
            sessions[instance_id] = sessions.get(instance_id, 0) + n
    connected = sum(sessions.values())
    if connected < topology.agent_count:
        log.warning("only %d of %d agents opened a session", connected, topology.agent_count)
    return swarms, sessions


def clock_sample(swarm: Any) -> ClockSample:
    """NTP-style exchange with one swarm through Ray (`actors.clock`)."""
    return measure(lambda: ray.get(swarm.clock.remote(), timeout=30), time.time_ns)


def drain(
    swarms: list[Any], topology: Topology, clock_start: list[ClockSample], progress: Progress
) -> tuple[list[Any], dict[str, dict[str, Any]]]:
    """Every swarm's output (rows on the driver's clock) and its clock report by swarm id."""
    outputs: list[Any] = []
    clocks: dict[str, dict[str, Any]] = {}
    with progress.phase("gather", total=len(swarms), unit="swarm") as bar:
        for index, swarm in enumerate(swarms):
            start = clock_start[index] if index < len(clock_start) else None
            end = clock_sample(swarm)
            output = ray.get(swarm.drain.remote(), timeout=120)
            # Rows go onto the driver's clock in the checker: stamp this swarm's offset.
            output.batch = stamp(output.batch, ClockOffset.over_run(start or end, end))
            clocks[topology.swarms[index].swarm_id] = clock_report(start or end, end)
            outputs.append(output)
            bar.advance()
    return outputs, clocks
