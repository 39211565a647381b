"""Connect to Ray: an existing cluster (`RAY_ADDRESS` / `--address`) or a local one we start.

Inside `ray job submit --working-dir . -- python experiments/x.py` the job already carries its
runtime env (the uploaded working dir), so we pass none. A driver that connects to a remote
cluster from a checkout ships the checkout as `working_dir`. A local Ray we start stays on
loopback (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) with no dashboard.

On an existing cluster, every alive node is asked once whether its workers' Python has the
project's dependencies (`cluster.deps`): a node whose runtime env lacks them would otherwise fail
deep inside an actor's start-up, as a traceback in a worker log.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from cluster import deps
from cluster.topology import PROJECT_ROOT

log = logging.getLogger(__name__)

#: Not shipped to a remote cluster with the working dir: virtualenv, state, reports, caches.
WORKING_DIR_EXCLUDES = [".venv", ".tmws", "test-reports", ".git", "**/__pycache__", "*.parquet"]
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"
#: How long a node may take to start a worker for the dependency probe.
PROBE_TIMEOUT_S = 120.0


class MissingDependencies(ValueError):
    """A Ray node's Python lacks project dependencies (a ValueError: the runner reports bad
    input as one line with exit code 2)."""


@dataclass
class RayConnection:
    """How we are connected, and whether shutting down is ours to do."""

    address: str | None
    started_local: bool

    def shutdown(self) -> None:
        """Disconnect; a local Ray we started stops with its processes."""
        if ray.is_initialized():
            ray.shutdown()


def in_submitted_job(env: Mapping[str, str]) -> bool:
    """True when running as the entrypoint of `ray job submit` (the job has its runtime env)."""
    return _JOB_CONFIG_ENV in env


def local_num_cpus(required_cpus: float, configured: int | None = None) -> int:
    """Logical CPUs for a local Ray: the preset's value, else enough for every bundle."""
    if configured:
        return max(configured, math.ceil(required_cpus))
    return max(os.cpu_count() or 1, math.ceil(required_cpus) + 1)


def runtime_env_for(address: str | None, env: Mapping[str, str]) -> dict[str, Any] | None:
    """The runtime env to pass to `ray.init` (None: none needed)."""
    if address is None or in_submitted_job(env) or address.startswith(("local", "127.0.0.1")):
        # Same machine: workers get the driver's cwd on sys.path, so nothing to ship.
        return None
    return {"working_dir": str(PROJECT_ROOT), "excludes": WORKING_DIR_EXCLUDES}


def connect(
    address: str | None = None,
    *,
    num_cpus: int | None = None,
    env: Mapping[str, str] | None = None,
) -> RayConnection:
    """Connect to Ray (reusing an initialised session); start a local one when no address is set."""
    env = os.environ if env is None else env
    address = address or env.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return RayConnection(address, started_local=False)
    if address:
        runtime_env = runtime_env_for(address, env)
        log.info("ray: connecting to %s (runtime_env=%s)", address, bool(runtime_env))
        ray.init(address=address, runtime_env=runtime_env, log_to_driver=True)
        try:
            check_cluster_dependencies()
        except MissingDependencies:
            ray.shutdown()
            raise
        return RayConnection(address, started_local=False)
    # Keep a local Ray on loopback; the variable must be in the environment Ray reads.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    log.info("ray: starting a local Ray with num_cpus=%s", num_cpus)
    ray.init(
        # "local" starts our own Ray even if another one runs on this machine (never join it).
        address="local",
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=True,
        configure_logging=False,
    )
    return RayConnection(None, started_local=True)


def node_problems_line(results: Mapping[str, list[str]]) -> str | None:
    """One line naming every node whose workers lack something, or None when all are fine."""
    bad = {node: found for node, found in results.items() if found}
    if not bad:
        return None
    parts = [f"node {node}: {', '.join(found)}" for node, found in sorted(bad.items())]
    return (
        f"Ray workers lack the project's dependencies ({'; '.join(parts)}): give the job a "
        f"runtime env that has them (the tmws-sim image on every node, or a head started from "
        f"the project's .venv: scripts/ray_local.sh up)"
    )


def check_cluster_dependencies(
    requirements: list[str] | None = None, timeout_s: float = PROBE_TIMEOUT_S
) -> None:
    """Ask every alive node's worker Python for `requirements` (default: the project's);
    raise `MissingDependencies` with one line when any node lacks one or cannot run the probe."""
    wanted = deps.project_requirements() if requirements is None else list(requirements)
    # `deps.problems` is pickled by reference: the worker imports only `cluster.deps` (stdlib).
    probe = ray.remote(num_cpus=0, max_retries=0)(deps.problems)
    refs = {}
    for node in ray.nodes():
        if not node.get("Alive"):
            continue
        name = f"{node.get('NodeManagerAddress')} ({node['NodeID'][:8]})"
        strategy = NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
        refs[name] = probe.options(scheduling_strategy=strategy).remote(wanted)
    results: dict[str, list[str]] = {}
    for name, ref in refs.items():
        try:
            results[name] = ray.get(ref, timeout=timeout_s)
        except ray.exceptions.GetTimeoutError:
            results[name] = [f"no worker started within {timeout_s:.0f}s"]
        except ray.exceptions.RayError as exc:
            # A worker that cannot even start (runtime env setup failed, no Ray in that Python).
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            results[name] = [f"the probe failed: {lines[-1] if lines else type(exc).__name__}"]
    line = node_problems_line(results)
    if line:
        raise MissingDependencies(line)
    log.info("ray: %d node(s) have the project's dependencies", len(results))
