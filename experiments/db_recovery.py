"""[6.1] Database connection loss and recovery: PostgreSQL really stopped and restarted mid-run.

The swarms send memory-pattern queries with `use_cache=false` (each needs the database) at a
steady open-loop rate. The driver probes every instance before, during and after the outage
(ping, /health, execute_pattern, store_memory), stops the embedded PostgreSQL, lets the load hit
the missing database, starts it again and probes until a request succeeds, without touching the
instances. Checks split the rows by the recorded fault times.

The PostgreSQL circuit breaker of every instance (service/store/db.py, shown in /health) is read
at the end of the outage and after recovery: it must have opened while the database was gone and
be closed again once requests succeed.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse
import asyncio
import time
from typing import Any

from actors.recorder import Outcome, SessionInfo
from analysis import checks, metrics
from analysis.checks import Criterion, Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, fault_target, main
from experiments.runner import Outcome as Verdict
from experiments.support.driver import DriverLog, violation
from experiments.support.instances import fetch_health, health_all, http_urls, scale_name, sized
from experiments.support.rows import (
    all_succeeded,
    between,
    failures,
    rate_pct,
    success_pct,
    where,
    where_in,
)
from service.client import WsClient

SECTION = "6.1"
MEMORY_QUERIES = [
    "what do I know about the deployment process",
    "recall my notes on postgres tuning",
    "what did I write down about the API rate limits",
    "search my memories for the migration plan",
]
#: open-loop rate (req/s) and phase length (s); rows before/during the outage (paces the faults)
LOAD = {
    "ci": {"rate": 12.0, "seconds": 30.0, "before": 50, "during": 60},
    "laptop": {"rate": 30.0, "seconds": 60.0, "before": 300, "during": 400},
    "cloud": {"rate": 60.0, "seconds": 90.0, "before": 900, "during": 1200},
}
RECOVERY_BOUND_S = 60.0


class DbRecoveryExperiment(Experiment):
    scenario = "db_recovery"
    section = SECTION
    title = "Database connection loss recovery (PostgreSQL stopped and restarted)"

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        target = fault_target(run)
        log = DriverLog(run.run_id, self.scenario)
        agent = f"{run.run_id}-dbprobe"
        facts: dict[str, Any] = {"pids_before": _pids(run)}
        asyncio.run(self._probe(run, log, agent, "before", seed=True))
        if target is None:
            facts["skipped"] = "servers given by URL: PostgreSQL is not ours to stop"
            facts[DRIVER_BATCHES] = log.batches()
            return facts
        load = sized(LOAD, scale_name(run))
        workload = {
            "mix": [{"method": "execute_pattern", "params": {"use_cache": False}}],
            "queries": MEMORY_QUERIES,
            "rate": {
                "start_rate": load["rate"],
                "peak_rate": load["rate"],
                "sustain_s": load["seconds"],
            },
            "request_timeout_s": 20,
        }
        handle = run.start_phase("load", workload)
        handle.wait_until_recorded(load["before"], timeout_s=60)
        facts["t_stop_ns"] = time.time_ns()
        target.stop_postgres()
        facts["t_stopped_ns"] = time.time_ns()
        asyncio.run(self._probe(run, log, agent, "outage"))
        handle.wait_until_recorded(load["before"] + load["during"], timeout_s=120)
        facts["breakers_outage"] = _db_breakers(asyncio.run(health_all(run)))
        facts["t_start_ns"] = time.time_ns()
        target.start_postgres()
        facts["t_started_ns"] = time.time_ns()
        facts["t_first_success_ns"] = asyncio.run(self._until_recovered(run, log, agent))
        asyncio.run(self._probe(run, log, agent, "after"))
        facts["breakers_after"] = _db_breakers(asyncio.run(health_all(run)))
        handle.wait()
        facts["pids_after"] = _pids(run)
        facts[DRIVER_BATCHES] = log.batches()
        return facts

    async def _probe(
        self, run: ClusterRun, log: DriverLog, agent: str, phase: str, *, seed: bool = False
    ) -> None:
        """On every instance: ping, /health, a memory pattern without cache, a store."""
        await asyncio.gather(
            *(
                self._probe_one(info.ws_url, url, log, f"{agent}-{i}", f"probe-{phase}", seed)
                for i, (info, url) in enumerate(
                    zip(run.instance_infos, http_urls(run), strict=True)
                )
            )
        )

    async def _probe_one(
        self, ws: str, http: str, log: DriverLog, agent: str, phase: str, seed: bool
    ) -> None:
        t_send = time.time_ns()
        try:
            health = await fetch_health(http)
            outcome = Outcome.ok(
                {"postgres": health.get("postgres"), "status": health.get("status")}
            )
        except Exception as exc:  # an instance that does not answer is exactly what we look for
            outcome = violation(f"health: {exc!r}")
        log.record(phase=phase, method="health", session=SessionInfo(agent), outcome=outcome,
                   t_send_ns=t_send, t_recv_ns=time.time_ns(), key="health", op="other")  # fmt: skip
        session = await WsClient.connect(ws, agent)
        try:
            if seed:
                await log.call(session, "store_memory",
                               {"content": "the deployment process uses blue green switches"},
                               phase=phase, key="seed")  # fmt: skip
            await log.call(session, "ping", {}, phase=phase, key="ping")
            await log.call(session, "execute_pattern",
                           {"query": MEMORY_QUERIES[0], "use_cache": False}, phase=phase,
                           key="memory_pattern", expect=memory_route)  # fmt: skip
            await log.call(session, "store_memory", {"content": f"probe note {phase}"},
                           phase=phase, key="store")  # fmt: skip
        finally:
            await session.close()

    async def _until_recovered(self, run: ClusterRun, log: DriverLog, agent: str) -> int | None:
        """Send memory patterns to every instance until each succeeds (every attempt is a row)."""
        deadline = time.monotonic() + RECOVERY_BOUND_S
        firsts: list[int] = []
        for i, info in enumerate(run.instance_infos):
            session = await WsClient.connect(info.ws_url, f"{agent}-{i}")
            try:
                while time.monotonic() < deadline:
                    call = await log.call(session, "execute_pattern",
                                          {"query": MEMORY_QUERIES[1], "use_cache": False},
                                          phase="recovery-probe", key="memory_pattern",
                                          expect=memory_route)  # fmt: skip
                    if call.ok:
                        firsts.append(call.row["t_recv_ns"])
                        break
                    # No event tells us PostgreSQL accepts connections again: retry, bounded.
                    await asyncio.sleep(0.2)
            finally:
                await session.close()
        return max(firsts) if len(firsts) == len(run.instance_infos) else None

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Verdict:
        if "skipped" in facts:
            return Verdict(
                [
                    checks.skipped(
                        "db_recovery",
                        facts["skipped"],
                        section=SECTION,
                        evidence=Evidence("PostgreSQL outages run", 0, 1),
                    )
                ]
            )
        table = result.table
        outage = between(table, facts["t_stopped_ns"], facts["t_start_ns"])
        outage_failed = failures(outage)
        db_errors = where(outage_failed, error_code=-32002, error_reason="database_unavailable")
        # Requests that need PostgreSQL: memory patterns without cache, and stores.
        needs_db = where_in(outage, "method", ["execute_pattern", "store_memory"])
        first_ok = facts["t_first_success_ns"]
        after = between(table, first_ok, None) if first_ok else table.slice(0, 0)
        fail_fast = metrics.latency_exact(outage_failed, successful_only=False)
        found: list[Criterion] = [
            all_succeeded(
                "no_service_crash_ping",
                where(table, phase="probe-outage", key="ping"),
                section=SECTION,
                minimum=3,
                description="every instance answers ping while PostgreSQL is down",
            ),
            all_succeeded(
                "no_service_crash_health",
                where(table, phase="probe-outage", key="health"),
                section=SECTION,
                minimum=3,
                description="every instance answers /health (reporting postgres unavailable)",
            ),
            checks.holds(
                "instances_not_restarted",
                facts["pids_before"] == facts["pids_after"],
                measured=f"pids {facts['pids_before']} -> {facts['pids_after']}",
                expectation="same process for every instance before and after",
                evidence=Evidence("instances", len(facts["pids_after"]), 1),
                section=SECTION,
            ),
            checks.at_least(
                "error_indicates_db_unavailable",
                rate_pct(db_errors.num_rows, needs_db.num_rows),
                100.0,
                evidence=Evidence(
                    "requests needing the database during the outage", needs_db.num_rows, 1
                ),
                description="requests needing the database during the outage answered -32002 "
                f"database_unavailable ({db_errors.num_rows} of {needs_db.num_rows})",
                unit="%",
                section=SECTION,
            ),
            checks.equals(
                "no_internal_errors",
                float(where(table, error_code=-32603).num_rows),
                0,
                evidence=Evidence("requests", table.num_rows, 1),
                description="-32603 replies during the whole run",
                section=SECTION,
            ),
            _breaker_criterion(facts),
            checks.holds(
                "automatic_recovery",
                first_ok is not None,
                measured=(
                    f"every instance served a DB pattern {(first_ok - facts['t_started_ns']) / 1e9:.2f}s "
                    "after PostgreSQL restarted"
                    if first_ok
                    else f"not within {RECOVERY_BOUND_S}s"
                ),
                expectation="requests succeed again without restarting instances",
                evidence=Evidence("PostgreSQL restarts", int("t_started_ns" in facts), 1),
                section=SECTION,
            ),
            checks.at_least(
                "success_after_recovery",
                success_pct(after),
                99.0,
                evidence=Evidence("requests sent after recovery", after.num_rows, 1),
                description="requests sent after the first recovered success",
                unit="%",
                section=SECTION,
            ),
            checks.at_most(
                "outage_error_latency_p95",
                fail_fast["p95"],
                1000.0,
                evidence=Evidence("requests failed during the outage", outage_failed.num_rows, 1),
                description="how fast a request fails while the database is down (fail fast)",
                unit="ms",
                section=SECTION,
                critical=args.scale != "ci",
            ),
        ]
        recovery_s = (first_ok - facts["t_started_ns"]) / 1e9 if first_ok else None
        outage_s = (facts["t_start_ns"] - facts["t_stopped_ns"]) / 1e9
        return Verdict(found, metrics={"recovery_s": recovery_s, "outage_s": outage_s,
                                       "outage_requests": outage.num_rows})  # fmt: skip


def memory_route(result: Any) -> str | None:
    """A memory query must be answered by its memory pattern, not by the LLM instead."""
    route = (result or {}).get("route")
    return None if route == "memory" else f"not_memory_route: answered by route {route!r}"


def _pids(run: ClusterRun) -> dict[str, int]:
    return {s["instance_id"]: s["pid"] for s in run.instance_stats()}


def _db_breakers(health: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """State and open count of each instance's PostgreSQL breaker, from /health."""
    out = []
    for h in health:
        breaker = (h.get("breakers") or {}).get("postgresql") or {}
        out.append({"state": breaker.get("state"), "opened": breaker.get("opened")})
    return out


def _breaker_criterion(facts: dict[str, Any]) -> Criterion:
    """Every instance's breaker opened during the outage and is closed after recovery."""
    outage, after = facts.get("breakers_outage"), facts.get("breakers_after")
    if not outage or not after:
        return checks.skipped(
            "circuit_breaker_activation",
            "no outage was run",
            section=SECTION,
            evidence=Evidence("PostgreSQL outages run", 0, 1),
        )
    opened = all((b["opened"] or 0) >= 1 for b in outage)
    closed = all(b["state"] == "closed" for b in after)
    return checks.holds(
        "circuit_breaker_activation",
        opened and closed,
        measured=f"outage {[b['state'] for b in outage]}, after {[b['state'] for b in after]}",
        expectation="each instance's PostgreSQL breaker opened during the outage, closed after",
        evidence=Evidence("instances whose breakers were read", len(outage), 1),
        section=SECTION,
    )


EXPERIMENT = DbRecoveryExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
