"""The run's service instances as a group: start, locate, kill, health, resource use.

Each function takes the actor handles it acts on; `ClusterRun` holds them and owns their
lifetime (teardown stops them by handle).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import ray

from actors.agents import Endpoint
from actors.service_instance import InstanceInfo, ServiceInstance
from cluster.calls import RunError, get_all
from cluster.placement import Placement

log = logging.getLogger(__name__)

HealthCheck = Callable[[dict[str, Any]], bool]


def start_instances(
    envs: Mapping[str, Mapping[str, str]],
    placement: Placement,
    num_cpus: float,
    timeout_s: float,
) -> tuple[list[Any], list[InstanceInfo]]:
    """One actor per instance id (in order, each in its placement bundle), once all serve."""
    actors = [
        ServiceInstance.options(
            name=None, num_cpus=num_cpus, scheduling_strategy=placement.for_instance(index)
        ).remote(dict(env))
        for index, env in enumerate(envs.values())
    ]
    infos = get_all([a.start.remote() for a in actors], timeout_s, "service instances to serve")
    for info in infos:
        log.info(
            "instance %s at %s on node %s (%.1fs)",
            info.instance_id,
            info.url,
            info.node_id,
            info.startup_s,
        )
    return actors, infos


def endpoints(infos: list[InstanceInfo]) -> tuple[Endpoint, ...]:
    """Where agents reach each instance."""
    return tuple(Endpoint(i.instance_id, i.ws_url, i.node_id) for i in infos)


def kill(actor: Any, instance_id: str) -> None:
    """Kill one instance's process the hard way; Ray restarts it (max_restarts)."""
    log.warning("killing instance %s (Ray will restart it)", instance_id)
    ray.kill(actor, no_restart=False)


def infos_after_restart(actors: list[Any], timeout_s: float) -> list[InstanceInfo]:
    """Where every instance serves now (a restarted one comes up on a new port)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            remaining = max(1.0, deadline - time.monotonic())
            return get_all(
                [a.info.remote() for a in actors], remaining, "instances after a restart"
            )
        except ray.exceptions.RayActorError:
            # A restarting actor rejects calls until it is alive again; bounded by the deadline.
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def health(actors: list[Any], timeout_s: float) -> list[dict[str, Any]]:
    """Every instance's own `/health` (status, redis, postgres, cache counters)."""
    return get_all([a.health.remote() for a in actors], timeout_s, "instance health")


def wait_healthy(
    actors: list[Any], check: HealthCheck | None, timeout_s: float, poll_s: float
) -> list[dict[str, Any]]:
    """Poll `/health` until `check(body)` holds for every instance (default: status ok)."""
    check = check or (lambda body: body.get("status") == "ok")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            bodies = health(actors, 10.0)
        except (ray.exceptions.RayError, RunError):
            bodies = []
        if bodies and all(check(b) for b in bodies):
            return bodies
        if time.monotonic() >= deadline:
            raise RunError(f"instances not healthy within {timeout_s:.0f}s: {bodies}")
        time.sleep(poll_s)  # polling an external condition, bounded by the deadline


def resource_stats(actors: list[Any]) -> list[dict[str, Any]]:
    """CPU%/RSS of every instance process (skips an instance that is restarting)."""
    refs = [a.stats.remote() for a in actors]
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=5)
    out = []
    for ref in ready:
        try:
            out.append(ray.get(ref))
        except ray.exceptions.RayError:
            continue
    return out
