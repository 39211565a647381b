"""[6.1] Database connection loss and recovery: PostgreSQL really taken away mid-run, then back.

Two outages, one after the other (`--fault-mode both`, the default; or `stop` / `pause`):
**stop** (the server is gone, connections are refused) and **pause** (SIGSTOP / `docker compose
pause`: connections stay open and nothing answers — every wait must be bounded by the service).
The fault goes through the fault driver (`cluster.faults`).

The swarms send, open loop, memory-pattern queries with `use_cache=false` (each needs the
database) and a cached pattern that needs no database ("execute tool test"). Around each outage
the driver probes every instance (ping, /health, a memory pattern, a store), stores marked
memories just before the fault and during it (`experiments.support.acked_writes`), takes
PostgreSQL away, checks with its own connection that it really is gone, keeps it away for a
while, brings it back and probes until a database request succeeds on every instance, without
touching the instances. Checks split the rows by the recorded fault times.

Judged per outage (suffix `_stop` / `_pause`): PostgreSQL unreachable (the driver's probe), no
crash (ping and /health answer), database requests answered with -32002 database_unavailable
(or -32001 when paused) and within their budget + 1 s, cached answers that need no database keep
answering (≥ 95 % within 1 s), each instance's PostgreSQL breaker opened and closed again,
recovery within a bound, success after it, and every acknowledged write present after recovery.
Over the run: no -32603, no instance restarted. With no fault driver every outage criterion is
reported skipped, which fails the run unless the user allows it.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
import time
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from actors.recorder import Outcome, SessionInfo
from analysis import checks, metrics
from analysis.checks import Criterion, Evidence
from cluster.run import ClusterRun, PhaseHandle, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, main
from experiments.runner import Outcome as Verdict
from experiments.support.acked_writes import (
    Visibility,
    WriteProbe,
    baseline_criteria,
    baseline_probe,
    memory_route,
    visibility_criterion,
)
from experiments.support.driver import DriverLog, violation
from experiments.support.instances import fetch_health, health_all, http_urls, scale_name, sized
from experiments.support.outages import (
    add_outage_arguments,
    bounded,
    plan_outages,
    postgres_answers,
    seconds,
    skipped_criteria,
)
from experiments.support.rows import (
    all_succeeded,
    between,
    failures,
    rate_pct,
    success_pct,
    successes,
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
#: A cached pattern that needs no database (only its learning record touches PostgreSQL).
NO_DB_QUERY = "execute tool test"
#: Per scale: open-loop rate (req/s) and phase length (s); rows before the fault; how long the
#: outage lasts at least (s) and how many rows it must see.
LOAD = {
    "ci": {"rate": 12.0, "seconds": 32.0, "before": 50, "outage_s": 10.0, "during": 60},
    "laptop": {"rate": 30.0, "seconds": 60.0, "before": 300, "outage_s": 15.0, "during": 400},
    "cloud": {"rate": 60.0, "seconds": 90.0, "before": 900, "outage_s": 20.0, "during": 1200},
}
RECOVERY_BOUND_S = 60.0
#: A request must answer within its budget + 1 s: patterns their own timeout (memory: 2 s),
#: tools the 5 s ceiling.
ANSWER_BOUND_S = {"execute_pattern": 3.0, "store_memory": 6.0, "recall_memory": 6.0}
#: Cached answers that need no database: success share and p95 latency during the outage.
CACHED_SUCCESS_PCT = 95.0
CACHED_P95_MS = 1000.0
#: Server replies that explain a lost database, per fault kind.
DB_ERRORS = {"stop": {-32002}, "pause": {-32002, -32001}}
OUTAGE_CRITERIA = (
    "postgres_unreachable",
    "no_service_crash_ping",
    "no_service_crash_health",
    "error_indicates_db_unavailable",
    "answers_within_budget",
    "cached_answers_during_outage",
    "circuit_breaker_activation",
    "automatic_recovery",
    "success_after_recovery",
    "acked_writes_durable",
    "acked_writes_visible_after_recovery",
)


def load_workload(load: dict[str, float]) -> dict[str, Any]:
    """Open loop: two thirds memory patterns without cache, one third the no-database pattern."""
    return {
        "mix": [
            {"method": "execute_pattern", "weight": 2, "params": {"use_cache": False}},
            {
                "method": "execute_pattern",
                "weight": 1,
                "params": {"query": NO_DB_QUERY, "use_cache": True},
            },
        ],
        "queries": MEMORY_QUERIES,
        "rate": {
            "start_rate": load["rate"],
            "peak_rate": load["rate"],
            "sustain_s": load["seconds"],
        },
        "request_timeout_s": 20,
    }


class DbRecoveryExperiment(Experiment):
    scenario = "db_recovery"
    section = SECTION
    title = "Database connection loss recovery (PostgreSQL stopped and paused mid-run)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_outage_arguments(parser)

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        plan = plan_outages(run, args)
        log = DriverLog(run.run_id, self.scenario)
        agent = f"{run.run_id}-dbprobe"
        facts: dict[str, Any] = {
            "pids_before": _pids(run),
            "fault_driver": plan.injector.name if plan.injector else None,
            "skipped_outages": plan.skipped,
            "outages": {},
        }
        try:
            asyncio.run(self._probe(run, log, agent, "before", seed=True))
            facts["baseline"] = asyncio.run(
                baseline_probe(
                    log,
                    [i.ws_url for i in run.instance_infos],
                    f"{agent}-base",
                    f"{agent}-stranger",
                    f"db baseline {run.run_id}",
                )
            )
            load = sized(LOAD, scale_name(run))
            for kind in plan.kinds:
                facts["outages"][kind] = self._outage(run, plan.injector, kind, load, log, agent)
            facts["pids_after"] = _pids(run)
        finally:
            facts["faults"] = plan.injector.to_dicts() if plan.injector else []
            facts[DRIVER_BATCHES] = log.batches()
        return facts

    def _outage(
        self,
        run: ClusterRun,
        injector: Any,
        kind: str,
        load: dict[str, float],
        log: DriverLog,
        agent: str,
    ) -> dict[str, Any]:
        """One outage of `kind` under load: its times, breaker states and write probes."""
        assert run.infra is not None
        ws = [i.ws_url for i in run.instance_infos]
        tag = f"{run.run_id} {kind}"
        before = WriteProbe(log, ws, f"{agent}-pre-{kind}", f"db drill before {tag}", f"pre-{kind}")
        during = WriteProbe(log, ws, f"{agent}-in-{kind}", f"db drill during {tag}", kind)
        asyncio.run(during.prime())
        out: dict[str, Any] = {}
        handle = run.start_phase(f"load-{kind}", load_workload(load))
        handle.wait_until_recorded(int(load["before"]), timeout_s=60)
        asyncio.run(before.write())
        out["breakers_before"] = _db_breakers(asyncio.run(health_all(run)))
        with injector.fault("postgres", kind) as record:
            out["postgres_answered_during"] = postgres_answers(run.infra.database_url)
            asyncio.run(self._probe(run, log, agent, f"outage-{kind}"))
            asyncio.run(during.write())
            self._hold(handle, record.applied_ns or time.time_ns(), load)
            out["breakers_outage"] = _db_breakers(asyncio.run(health_all(run)))
        out["t_first_success_ns"] = asyncio.run(self._until_recovered(run, log, agent, kind))
        asyncio.run(self._probe(run, log, agent, f"after-{kind}"))
        out["breakers_after"] = _db_breakers(asyncio.run(health_all(run)))
        handle.wait()
        asyncio.run(before.verify())
        asyncio.run(during.verify())
        out.update(
            t_applied_ns=record.applied_ns,
            t_heal_ns=record.heal_requested_ns,
            t_healed_ns=record.healed_ns,
            probes=[before.report.to_dict(), during.report.to_dict()],
        )
        return out

    @staticmethod
    def _hold(handle: PhaseHandle, applied_ns: int, load: dict[str, float]) -> None:
        """Keep the outage for `outage_s` and at least `during` rows (or until the load ended)."""
        start = handle.wait_until_recorded(0)
        handle.wait_until_recorded(start + int(load["during"]), timeout_s=120)
        left = load["outage_s"] - (time.time_ns() - applied_ns) / 1e9
        if left > 0:
            # The outage's length is the point here: requests must hit the missing database.
            time.sleep(left)

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

    async def _until_recovered(
        self, run: ClusterRun, log: DriverLog, agent: str, kind: str
    ) -> int | None:
        """Send memory patterns to every instance until each succeeds (every attempt is a row)."""
        deadline = time.monotonic() + RECOVERY_BOUND_S
        firsts: list[int] = []
        for i, info in enumerate(run.instance_infos):
            session = await WsClient.connect(info.ws_url, f"{agent}-{i}")
            try:
                while time.monotonic() < deadline:
                    call = await log.call(session, "execute_pattern",
                                          {"query": MEMORY_QUERIES[1], "use_cache": False},
                                          phase=f"recovery-probe-{kind}", key="memory_pattern",
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
        table = result.table
        found: list[Criterion] = [
            checks.equals(
                "no_internal_errors",
                float(where(table, error_code=-32603).num_rows),
                0,
                evidence=Evidence("requests", table.num_rows, 1),
                description="-32603 replies during the whole run",
                section=SECTION,
            ),
        ]
        if "pids_after" in facts:
            found.append(
                checks.holds(
                    "instances_not_restarted",
                    facts["pids_before"] == facts["pids_after"],
                    measured=f"pids {facts['pids_before']} -> {facts['pids_after']}",
                    expectation="same process for every instance before and after",
                    evidence=Evidence("instances", len(facts["pids_after"]), 1),
                    section=SECTION,
                )
            )
        for kind, reason in facts["skipped_outages"].items():
            found += skipped_criteria(OUTAGE_CRITERIA, kind, reason, section=SECTION)
        numbers: dict[str, Any] = {"faults": facts.get("faults", [])}
        instances = len(set(pc.drop_null(table.column("instance_id")).to_pylist()))
        found += baseline_criteria(facts["baseline"], instances, section=SECTION)
        for kind, outage in facts["outages"].items():
            judged, numbers[kind] = _judge_outage(table, kind, outage, instances, args.scale)
            found += judged
        return Verdict(found, metrics=numbers)


def _judge_outage(
    table: pa.Table, kind: str, outage: dict[str, Any], instances: int, scale: str
) -> tuple[list[Criterion], dict[str, Any]]:
    """The criteria of one outage from its rows, breaker readings and write probes."""
    applied, heal = outage["t_applied_ns"], outage["t_heal_ns"]
    first_ok = outage["t_first_success_ns"]
    rows = between(table, applied, heal)
    # Requests that need PostgreSQL: memory patterns without cache, stores and recalls.
    needs_db = where_in(
        rows.filter(pc.invert(pc.equal(pc.fill_null(rows.column("key"), ""), NO_DB_QUERY))),
        "method",
        ["execute_pattern", "store_memory", "recall_memory"],
    )
    # Those sent early enough to have to fail before the database came back.
    settled = between(needs_db, None, heal - int(max(ANSWER_BOUND_S.values()) * 1e9))
    explained = _explained(failures(settled), DB_ERRORS[kind])
    late = _over_budget(needs_db)
    cached = where(rows, key=NO_DB_QUERY)
    cached_p95 = metrics.latency_exact(cached, successful_only=False)["p95"]
    load = where(table, phase=f"load-{kind}")
    after = between(load, first_ok, None) if first_ok else load.slice(0, 0)
    fail_fast = metrics.latency_exact(failures(rows), successful_only=False)
    reports = outage["probes"]
    durable = Visibility.of(reports, "recall", instances)
    visible = Visibility.of(reports, "pattern", instances)
    found = [
        checks.holds(
            f"postgres_unreachable_{kind}",
            not outage["postgres_answered_during"],
            measured="the driver's SELECT 1 failed"
            if not outage["postgres_answered_during"]
            else "the driver's SELECT 1 still answered",
            expectation=f"PostgreSQL really unavailable once the {kind} was applied",
            evidence=Evidence("driver probes of PostgreSQL during the fault", 1, 1),
            section=SECTION,
        ),
        all_succeeded(
            f"no_service_crash_ping_{kind}",
            where(table, phase=f"probe-outage-{kind}", key="ping"),
            section=SECTION,
            minimum=instances,
            description="every instance answers ping while PostgreSQL is away",
        ),
        all_succeeded(
            f"no_service_crash_health_{kind}",
            where(table, phase=f"probe-outage-{kind}", key="health"),
            section=SECTION,
            minimum=instances,
            description="every instance answers /health (reporting postgres unavailable)",
        ),
        checks.at_least(
            f"error_indicates_db_unavailable_{kind}",
            rate_pct(explained.num_rows, settled.num_rows),
            100.0,
            evidence=Evidence(
                "database requests due before the outage ended", settled.num_rows, 10
            ),
            description="database requests sent during the outage (and due before it ended) "
            f"answered {'/'.join(str(c) for c in sorted(DB_ERRORS[kind]))} naming the "
            f"database ({explained.num_rows} of {settled.num_rows})",
            unit="%",
            section=SECTION,
        ),
        checks.holds(
            f"answers_within_budget_{kind}",
            late.num_rows == 0,
            measured=f"{late.num_rows} of {needs_db.num_rows} over budget"
            + (f"; slowest {_slowest(late)}" if late.num_rows else ""),
            expectation="every database request answered within its budget + 1 s "
            "(patterns 3 s, tools 6 s)",
            description="no wait on the lost database is unbounded",
            evidence=Evidence("database requests sent during the outage", needs_db.num_rows, 10),
            section=SECTION,
        ),
        checks.holds(
            f"cached_answers_during_outage_{kind}",
            (success_pct(cached) or 0.0) >= CACHED_SUCCESS_PCT
            and cached_p95 is not None
            and cached_p95 <= CACHED_P95_MS,
            measured=f"{successes(cached).num_rows}/{cached.num_rows} succeeded, "
            f"p95 {cached_p95 if cached_p95 is None else round(cached_p95)} ms",
            expectation=f"≥ {CACHED_SUCCESS_PCT:g}% succeeded, p95 ≤ {CACHED_P95_MS:g} ms",
            evidence=Evidence("no-database requests sent during the outage", cached.num_rows, 10),
            description=f"'{NO_DB_QUERY}' (needs no database) keeps answering during the outage",
            section=SECTION,
        ),
        _breaker_criterion(kind, outage),
        bounded(
            f"automatic_recovery_{kind}",
            seconds(outage["t_healed_ns"], first_ok),
            RECOVERY_BOUND_S,
            what="every instance served a database pattern again, without restarts",
            evidence=Evidence("instances probed", instances, 1),
            section=SECTION,
        ),
        checks.at_least(
            f"success_after_recovery_{kind}",
            success_pct(after),
            99.0,
            evidence=Evidence("load requests sent after recovery", after.num_rows, 10),
            description="load requests sent after the first recovered success",
            unit="%",
            section=SECTION,
        ),
        visibility_criterion(
            f"acked_writes_durable_{kind}",
            durable,
            reports,
            "database (recall_memory)",
            evidence=Evidence("acknowledged marked writes", durable.acked, 1),
            section=SECTION,
        ),
        visibility_criterion(
            f"acked_writes_visible_after_recovery_{kind}",
            visible,
            reports,
            "cached pattern",
            evidence=Evidence("acknowledged marked writes", visible.acked, 1),
            section=SECTION,
        ),
        checks.at_most(
            f"outage_error_latency_p95_{kind}",
            fail_fast["p95"],
            1000.0,
            evidence=Evidence("requests failed during the outage", failures(rows).num_rows, 10),
            description="how fast a request fails while the database is away (fail fast)",
            unit="ms",
            section=SECTION,
            critical=scale != "ci" and kind == "stop",
        ),
    ]
    numbers = {
        "outage_s": seconds(applied, outage["t_healed_ns"]),
        "recovery_s": seconds(outage["t_healed_ns"], first_ok),
        "outage_requests": rows.num_rows,
        "db_requests_during_outage": needs_db.num_rows,
        "longest_db_answer_ms": _max_latency(needs_db),
        "errors_during_outage": metrics.error_frequency(rows),
        "cached_during_outage": {
            "rows": cached.num_rows,
            "success_pct": success_pct(cached),
            "latency_ms": metrics.latency_exact(cached, successful_only=False),
        },
        "success_after_recovery_pct": success_pct(after),
        "breakers": {
            "before": outage["breakers_before"],
            "outage": outage["breakers_outage"],
            "after": outage["breakers_after"],
        },
        "writes": {
            "attempted": durable.attempted,
            "acked": durable.acked,
            "refused": durable.refused,
            "unknown": durable.unknown,
        },
    }
    return found, numbers


def _explained(rows: pa.Table, codes: set[int]) -> pa.Table:
    """Failed rows whose server error is one of `codes` and names the database."""
    code_ok = pc.is_in(rows.column("error_code"), pa.array(sorted(codes), type=pa.int64()))
    reason = pc.fill_null(rows.column("error_reason"), "")
    names_db = pc.or_(
        pc.match_substring(reason, "database"), pc.equal(rows.column("error_code"), -32001)
    )
    return rows.filter(pc.and_(pc.fill_null(code_ok, False), names_db))


def _over_budget(rows: pa.Table) -> pa.Table:
    """Rows answered later than their method's budget + 1 s."""
    bounds = [ANSWER_BOUND_S.get(m, 6.0) * 1000.0 for m in rows.column("method").to_pylist()]
    return rows.filter(pc.greater(rows.column("latency_ms"), pa.array(bounds, pa.float64())))


def _slowest(rows: pa.Table) -> str:
    worst = max(rows.to_pylist(), key=lambda r: r["latency_ms"])
    return f"{worst['method']} {worst['latency_ms']:.0f} ms ({worst['error_reason'] or 'ok'})"


def _max_latency(rows: pa.Table) -> float | None:
    return pc.max(rows.column("latency_ms")).as_py() if rows.num_rows else None


def _pids(run: ClusterRun) -> dict[str, int]:
    return {s["instance_id"]: s["pid"] for s in run.instance_stats()}


def _db_breakers(health: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """State and open count of each instance's PostgreSQL breaker, from /health."""
    out = []
    for h in health:
        breaker = (h.get("breakers") or {}).get("postgresql") or {}
        out.append({"state": breaker.get("state"), "opened": breaker.get("opened")})
    return out


def _breaker_criterion(kind: str, outage: dict[str, Any]) -> Criterion:
    """Every instance's breaker opened during this outage (its open count grew since just before
    the fault: an earlier outage's opening does not count) and is closed after recovery."""
    before, during = outage["breakers_before"], outage["breakers_outage"]
    after = outage["breakers_after"]
    opened = (
        bool(during)
        and len(before) == len(during)
        and all(
            (d["opened"] or 0) > (b["opened"] or 0) for b, d in zip(before, during, strict=True)
        )
    )
    closed = bool(after) and all(b["state"] == "closed" for b in after)
    return checks.holds(
        f"circuit_breaker_activation_{kind}",
        opened and closed,
        measured=f"outage {[b['state'] for b in during]}, after {[b['state'] for b in after]}",
        expectation="each instance's PostgreSQL breaker opened during the outage, closed after",
        evidence=Evidence("instances whose breakers were read", len(during), 1),
        section=SECTION,
    )


EXPERIMENT = DbRecoveryExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
