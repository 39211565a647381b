"""Connect to Ray: an existing cluster (`RAY_ADDRESS` / `--address`) or a local one we start.

Inside `ray job submit --working-dir . -- python experiments/x.py` the job already carries its
runtime env (the uploaded working dir), so we pass none. A driver that connects to a remote
cluster from a checkout ships the checkout as `working_dir`. A local Ray we start stays on
loopback (`RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`) with no dashboard.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import ray

from cluster.topology import PROJECT_ROOT

log = logging.getLogger(__name__)

#: Not shipped to a remote cluster with the working dir: virtualenv, state, reports, caches.
WORKING_DIR_EXCLUDES = [".venv", ".tmws", "test-reports", ".git", "**/__pycache__", "*.parquet"]
_JOB_CONFIG_ENV = "RAY_JOB_CONFIG_JSON_ENV_VAR"


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
