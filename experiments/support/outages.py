"""What the fault experiments (4.2 Redis failover, 6.1 database recovery) share: which outages a
run takes (`--fault-mode`), the driver that takes them, the driver's own look at the server (is it
really gone?), bounded waits on the instances' `/health`, and the skipped criteria of an outage
that could not be run.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from redis import Redis
from redis.exceptions import RedisError

from analysis import checks
from analysis.checks import Criterion, Evidence
from cluster.faults import KINDS, FaultInjector, add_fault_arguments, choose_driver, owned_servers
from cluster.run import ClusterRun, RunError

FAULT_MODES = {"stop": ("stop",), "pause": ("pause",), "both": ("stop", "pause")}
#: How long the driver waits for its own probe of a server that should be gone.
PROBE_TIMEOUT_S = 1.5


def add_outage_arguments(parser: argparse.ArgumentParser) -> None:
    """--fault-mode plus the fault driver's options."""
    parser.add_argument(
        "--fault-mode",
        choices=tuple(FAULT_MODES),
        default="both",
        help="stop (server gone: connections refused), pause (SIGSTOP / docker pause: "
        "connections stay open and nothing answers), or both, one after the other (default)",
    )
    add_fault_arguments(parser)


@dataclass
class OutagePlan:
    """The outages this run takes, and why any of the asked-for ones cannot be taken."""

    injector: FaultInjector | None
    kinds: tuple[str, ...]
    skipped: dict[str, str]


def plan_outages(run: ClusterRun, args: argparse.Namespace) -> OutagePlan:
    """The driver from the options and the kinds it can run; `ValueError` for impossible options."""
    injector = choose_driver(args, owned_servers(run))
    wanted = FAULT_MODES[args.fault_mode]
    if injector is None:
        reason = (
            "no fault driver: the servers were given by URL and no --faults compose or "
            "--fault-*-cmd options were given, so nothing was taken away"
        )
        return OutagePlan(None, (), dict.fromkeys(wanted, reason))
    kinds = tuple(k for k in wanted if injector.supports(k))
    skipped = {
        k: f"the {injector.name} fault driver cannot {k} and {KINDS[k]} a server"
        + (
            " (give --fault-pause-cmd and --fault-resume-cmd)"
            if injector.name == "commands"
            else ""
        )
        for k in wanted
        if k not in kinds
    }
    if not kinds:
        raise ValueError(f"--fault-mode {args.fault_mode}: {next(iter(skipped.values()))}")
    return OutagePlan(injector, kinds, skipped)


def skipped_criteria(
    names: Sequence[str], kind: str, reason: str, *, section: str
) -> list[Criterion]:
    """The criteria of one outage that did not run, each skipped with the reason (a critical
    skip fails the run unless the user allows it by name)."""
    none = Evidence(f"{kind} outages run", 0, 1)
    return [
        checks.skipped(f"{name}_{kind}", reason, section=section, evidence=none) for name in names
    ]


def redis_answers(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """The driver's own PING (a stopped server refuses, a paused one times out)."""
    client = Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s)
    try:
        return bool(client.ping())
    except (RedisError, OSError):
        return False
    finally:
        client.close()


def postgres_answers(url: str, timeout_s: float = PROBE_TIMEOUT_S) -> bool:
    """The driver's own `SELECT 1` on a fresh connection, bounded."""

    async def probe() -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                conn = await asyncpg.connect(url, timeout=timeout_s)
                try:
                    return await conn.fetchval("SELECT 1") == 1
                finally:
                    conn.terminate()
        except (TimeoutError, OSError, asyncpg.PostgresError):
            return False

    return asyncio.run(probe())


def wait_all(
    run: ClusterRun, check: Callable[[dict[str, Any]], bool], timeout_s: float
) -> int | None:
    """Wall-clock ns when every instance's `/health` satisfied `check`, or None within the bound."""
    try:
        run.wait_healthy(check, timeout_s=timeout_s)
    except RunError:
        return None
    return time.time_ns()


def seconds(start_ns: int | None, end_ns: int | None) -> float | None:
    """end - start in seconds (None if either is missing)."""
    return None if start_ns is None or end_ns is None else (end_ns - start_ns) / 1e9


def bounded(
    name: str,
    value_s: float | None,
    bound_s: float,
    *,
    what: str,
    evidence: Evidence,
    section: str,
) -> Criterion:
    """`value_s` ≤ `bound_s`, where a missing value (never happened) is a failure, not a skip."""
    return checks.holds(
        name,
        value_s is not None and value_s <= bound_s,
        measured=f"{value_s:.2f}s" if value_s is not None else f"not within {bound_s:g}s",
        expectation=f"≤ {bound_s:g}s",
        evidence=evidence,
        description=what,
        section=section,
    )
