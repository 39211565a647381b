"""Plan 4.2 — Redis failover: Redis really taken away in the middle of the load, then brought back.

Two outages, one after the other (`--fault-mode both`, the default; or `stop` / `pause`):

- **stop**: the server is gone, connections are refused — the easy case;
- **pause**: the server is frozen (SIGSTOP, `docker compose pause`): connections stay open and
  nothing answers, so every wait must be bounded by the service itself.

The fault goes through the fault driver (`cluster.faults`: the embedded servers, docker compose,
or the user's own commands). Each outage: a write probe primes a cached answer on every instance
(`experiments.support.acked_writes`), the load phase `load-<kind>` starts, Redis is taken away
once a share of it has run, the driver checks with its own PING that Redis really is gone, waits
until every instance's `/health` says so, stores one marked memory through every instance, and
brings Redis back after enough requests were answered without it. Once every instance reports
Redis healthy again, every instance must answer the primed query with every acknowledged marker
in it (cache on), and the database must hold them. A final `recovery` phase on fresh namespaces
shows L2 in use again.

Judged per outage (suffix `_stop` / `_pause`): Redis unreachable (the driver's probe), every
instance noticed, success during the outage (≥ 95 % stopped, ≥ 90 % paused: requests in flight
when Redis froze wait out a socket timeout), degraded answers marked and L1 used as the fallback,
reconnection within a bound, acknowledged writes visible after recovery. Over the whole run:
the coherency checker (strict, or eventual with `--staleness-bound-ms`) and L2 hits after
recovery. With no fault driver every outage criterion is reported skipped, which fails the run
unless the user allows it.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks, criteria, metrics
from analysis.checks import Criterion, Evidence
from analysis.coherency import Needs, check_coherency
from cluster.run import ClusterRun, PhaseHandle, RunResult
from experiments import cache_rows
from experiments.runner import DRIVER_BATCHES, Experiment, Outcome, main
from experiments.support.acked_writes import (
    Visibility,
    WriteProbe,
    baseline_criteria,
    baseline_probe,
    visibility_criterion,
)
from experiments.support.driver import DriverLog
from experiments.support.outages import (
    add_outage_arguments,
    bounded,
    plan_outages,
    redis_answers,
    seconds,
    skipped_criteria,
    wait_all,
)

QUERIES = (
    "what do we know about the release plan",
    "find my notes about redis failover",
    "show the system status",
    "execute tool test",
)
#: Namespace-scoped infrastructure patterns (a memory pattern may have been demoted by the
#: outage's timeouts and answered by the LLM, uncached).
RECOVERY_QUERIES = ("who am I", "show cache statistics")
#: Per scale: agents (None: the preset's), load requests per agent, think time, rows before the
#: fault, rows answered during the outage.
SIZES: dict[str, dict[str, Any]] = {
    # 90 agents on 2 shared cores: 300 at once time memory patterns out before any fault.
    "ci": {"agents": 90, "requests": 10, "think_ms": (200, 800), "before": 150, "during": 250},
    "laptop": {
        "agents": None,
        "requests": 12,
        "think_ms": (100, 400),
        "before": 800,
        "during": 1200,
    },
    "cloud": {
        "agents": None,
        "requests": 20,
        "think_ms": (100, 400),
        "before": 5000,
        "during": 8000,
    },
}
#: Success during the outage, per fault kind (%): a paused Redis holds the requests in flight
#: when it froze until a socket timeout ends them.
SUCCESS_DURING = {"stop": 95.0, "pause": 90.0}
#: Every instance must notice the outage, and reconnect after it, within these bounds (s).
NOTICE_BOUND_S = 30.0
#: Requests an outage must see before its success share means anything.
MIN_OUTAGE_ROWS = 50
RECONNECT_BOUND_S = 30.0
TEAMS = 10
#: Invalidation delay reported against when no staleness bound is stated (not gating).
PROPAGATION_REPORT_MS = 1000.0
#: Tracked content topics per team.
TOPICS = 2
SECTION = "4.2"
OUTAGE_CRITERIA = (
    "redis_unreachable",
    "outage_noticed",
    "rows_during_outage",
    "success_during_outage",
    "degraded_marked",
    "local_cache_fallback",
    "automatic_reconnection",
    "acked_writes_visible_after_recovery",
    "acked_writes_durable",
)


def workload(requests: int, think_ms: tuple[int, int] = (100, 400)) -> dict[str, Any]:
    """Mostly cached reads of team and global patterns, a few team writes (each write during
    the outage flushes that instance's L1 for the team, so writes are kept rare). Writes and a
    share of the reads are tracked (content check): a store's content is one of the team's
    topics, and reads of that topic after recovery must include it."""
    return {
        "mix": [
            {"method": "execute_pattern", "weight": 12},
            {"method": "execute_pattern", "weight": 4, "tracked": True},
            {"method": "store_memory", "weight": 1, "tracked": True},
        ],
        "requests_per_agent": requests,
        "think_time_ms": list(think_ms),
        "queries": list(QUERIES),
        "teams": TEAMS,
        "topics": TOPICS,
        "request_timeout_s": 20,
    }


def after_workload() -> dict[str, Any]:
    """One tracked read per agent on its team's topics (the content check after recovery)."""
    return {
        **workload(1, (0, 200)),
        "mix": [{"method": "execute_pattern", "tracked": True}],
    }


def recovery_workload(run_id: str) -> dict[str, Any]:
    """Namespace-scoped infrastructure queries on team namespaces never used before."""
    return {
        **workload(3, (0, 50)),
        "mix": {"execute_pattern": 1},
        "queries": list(RECOVERY_QUERIES),
        "team_prefix": f"{run_id}-rec",
    }


def _redis_ok(body: dict[str, Any]) -> bool:
    return body.get("redis") == "ok"


def _redis_not_ok(body: dict[str, Any]) -> bool:
    return body.get("redis") != "ok"


class RedisFailoverExperiment(Experiment):
    scenario = "redis_failover"
    section = SECTION
    title = "Redis failover: stopped and paused mid-load; degraded service, then reconnection"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_outage_arguments(parser)
        parser.add_argument(
            "--cache-mode",
            choices=("strict", "eventual"),
            default="strict",
            help="TMWS_CACHE_MODE of the instances (and the coherency checker's mode)",
        )
        parser.add_argument(
            "--staleness-bound-ms",
            type=float,
            default=None,
            help="eventual mode: stale reads begun later than this after the write fail the run",
        )

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_CACHE_MODE": args.cache_mode}

    def agent_count(self, args: argparse.Namespace) -> int | None:
        return SIZES.get(args.scale, SIZES["laptop"])["agents"]  # type: ignore[no-any-return]

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        plan = plan_outages(run, args)
        size = SIZES.get(args.scale, SIZES["laptop"])
        log = DriverLog(run.run_id, self.scenario)
        facts: dict[str, Any] = {
            "global_scope_patterns": cache_rows.global_scope_patterns(),
            "cache_mode": args.cache_mode,
            "fault_driver": plan.injector.name if plan.injector else None,
            "skipped_outages": plan.skipped,
            "outages": {},
        }
        run.phase("warmup", {**workload(len(QUERIES), (0, 0)), "mix": {"execute_pattern": 1}})
        try:
            settle = (
                (args.staleness_bound_ms or 0.0) / 1000.0 if args.cache_mode == "eventual" else 0
            )
            facts["baseline"] = asyncio.run(
                baseline_probe(
                    log,
                    [i.ws_url for i in run.instance_infos],
                    f"{run.run_id}-base",
                    f"{run.run_id}-stranger",
                    f"baseline drill {run.run_id}",
                    settle_s=settle,
                )
            )
            for kind in plan.kinds:
                facts["outages"][kind] = self._outage(run, plan.injector, kind, size, log)
            if not plan.kinds:
                # No outage: the load still runs, so what does not need one is judged on evidence.
                run.phase("load", workload(size["requests"], size["think_ms"]))
                facts["propagation_ms"] = cache_rows.instance_propagation(run)
            # Fresh team namespaces: nothing of them is cached anywhere, so after one instance
            # fills a key the others can only answer from L2 — proof that L2 is back in use.
            run.phase("recovery", recovery_workload(run.run_id))
        finally:
            facts["faults"] = plan.injector.to_dicts() if plan.injector else []
            facts[DRIVER_BATCHES] = log.batches()
        return facts

    def _outage(
        self, run: ClusterRun, injector: Any, kind: str, size: dict[str, Any], log: DriverLog
    ) -> dict[str, Any]:
        """One outage of `kind` under load; returns its times and the write probe's report."""
        assert run.infra is not None
        ws = [i.ws_url for i in run.instance_infos]
        probe = WriteProbe(
            log, ws, f"{run.run_id}-drill-{kind}", f"failover drill {kind} {run.run_id}", kind
        )
        asyncio.run(probe.prime())
        out: dict[str, Any] = {}
        handle = run.start_phase(f"load-{kind}", workload(size["requests"], size["think_ms"]))
        handle.wait_until_recorded(size["before"], timeout_s=120)
        # Invalidation delays measured by the instances so far, before this fault can hold any
        # message back (a pause delivers the messages in flight when it ends).
        out["propagation_ms"] = cache_rows.instance_propagation(run)
        with injector.fault("redis", kind) as record:
            out["redis_answered_during"] = redis_answers(run.infra.redis_url)
            out["t_noticed_ns"] = wait_all(run, _redis_not_ok, NOTICE_BOUND_S)
            asyncio.run(probe.write())
            self._hold(handle, size["during"])
        out["t_reconnected_ns"] = wait_all(run, _redis_ok, RECONNECT_BOUND_S)
        handle.wait()
        asyncio.run(probe.verify())
        # Every agent reads one of its team's tracked topics again: each answer must include
        # every store of that topic acknowledged before it, the outage's included.
        run.phase(f"after-{kind}", after_workload())
        out.update(
            t_applied_ns=record.applied_ns,
            t_heal_ns=record.heal_requested_ns,
            t_healed_ns=record.healed_ns,
            probe=probe.report.to_dict(),
        )
        return out

    @staticmethod
    def _hold(handle: PhaseHandle, during: int) -> None:
        """Keep the outage until `during` more rows were recorded (or the load phase ended)."""
        noticed = handle.wait_until_recorded(0)
        handle.wait_until_recorded(noticed + during, timeout_s=180)

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        table = cache_rows.scope_namespaces(result.table, facts["global_scope_patterns"])
        coherency = self._coherency(table, facts, args)
        found = [criteria.success_rate_criterion(table, 95.0, section=SECTION, critical=False)]
        extra: dict[str, Any] = {"faults": facts.get("faults", [])}
        instances = len(set(pc.drop_null(table.column("instance_id")).to_pylist()))
        for kind, reason in facts["skipped_outages"].items():
            found += skipped_criteria(OUTAGE_CRITERIA, kind, reason, section=SECTION)
        for kind, outage in facts["outages"].items():
            judged, numbers = _judge_outage(table, kind, outage, instances)
            found += judged
            extra[kind] = numbers
        # Eventual mode without a stated bound promises no time by which a write is visible.
        bounded_visibility = args.cache_mode == "strict" or args.staleness_bound_ms is not None
        found += baseline_criteria(
            facts["baseline"], instances, section=SECTION, visibility_critical=bounded_visibility
        )
        recovery = cache_rows.rows_of(table, phases=["recovery"])
        found += _recovery_criteria(recovery)
        found.append(_propagation_criterion(facts, args))
        extra["recovery"] = {
            "rows": recovery.num_rows,
            "l2_hits": _count(recovery, cache_tier="l2"),
            "degraded": _count(recovery, degraded=True),
            "routes": cache_rows.count_by(recovery, "route"),
        }
        extra["stale_reads_by_tier"] = cache_rows.stale_by_tier(table, args.cache_mode)
        return Outcome(found, extra, coherency)

    @staticmethod
    def _coherency(table: pa.Table, facts: dict[str, Any], args: argparse.Namespace) -> Any:
        """The checker (versions and content) over the whole run — outage writes against the
        reads after recovery included — with its "checkable" gates judged outside the outages:
        during one, degraded reads and unversioned writes are the design, not a blind spot."""
        judge = {
            "mode": args.cache_mode,
            "staleness_bound_ms": args.staleness_bound_ms,
            "section": SECTION,
            "content": True,
            "needs": NEEDS,
        }
        report = check_coherency(table, **judge)
        outside = outside_outages(table, facts["outages"].values())
        gates = {c.name: c for c in check_coherency(outside, **judge).criteria if c.name in GATES}
        report.criteria = [gates.get(c.name, c) for c in report.criteria]
        return report


#: The coherency checker's evidence gates, judged on the rows outside the outages.
GATES = ("checkable_reads", "versioned_writes", "content_checkable_reads")
#: Evidence minimums at this load (ci: 2 × 900 load rows, ~50 tracked stores per outage).
NEEDS = Needs(stale_pairs=20, own_writes=1, session_pairs=20, content_pairs=20, content_reads=20)


def outside_outages(table: pa.Table, outages: Any) -> pa.Table:
    """Rows wholly outside every outage window (fault applied → every instance reconnected): a
    request still in flight when the fault began is answered degraded, by design."""
    for outage in outages:
        start = outage["t_applied_ns"]
        end = outage["t_reconnected_ns"] or outage["t_healed_ns"]
        if start is None or end is None:
            continue
        before = pc.less(table.column("t_recv_ns"), start)
        after = pc.greater_equal(table.column("t_send_ns"), end)
        table = table.filter(pc.or_(before, after))
    return table


def _judge_outage(
    table: pa.Table, kind: str, outage: dict[str, Any], instances: int
) -> tuple[list[Criterion], dict[str, Any]]:
    """The criteria of one outage, from its rows (sent while every instance knew Redis was gone)
    and the driver's own observations."""
    start = outage["t_noticed_ns"] or outage["t_applied_ns"]
    during = cache_rows.between(table, start, outage["t_heal_ns"])
    ok = during.filter(pc.equal(during.column("success"), True))
    # The plan's "execution succeeds without Redis": pattern executions. A write may be refused
    # by design while Redis cannot announce it (-32002 cache_unavailable, applied=false).
    executions = cache_rows.rows_of(during, method="execute_pattern")
    rate = metrics.success_rate(executions)
    threshold = SUCCESS_DURING[kind]
    reports = [outage["probe"]]
    cached = Visibility.of(reports, "pattern", instances)
    durable = Visibility.of(reports, "recall", instances)
    found = [
        checks.holds(
            f"redis_unreachable_{kind}",
            not outage["redis_answered_during"],
            measured="the driver's PING failed"
            if not outage["redis_answered_during"]
            else "the driver's PING still got PONG",
            expectation=f"Redis really unavailable once the {kind} was applied",
            evidence=Evidence("driver probes of Redis during the fault", 1, 1),
            section=SECTION,
        ),
        bounded(
            f"outage_noticed_{kind}",
            seconds(outage["t_applied_ns"], outage["t_noticed_ns"]),
            NOTICE_BOUND_S,
            what="every instance's /health reported Redis not ok",
            evidence=Evidence("instances polled", instances, 1),
            section=SECTION,
        ),
        checks.at_least(
            f"rows_during_outage_{kind}",
            float(during.num_rows),
            MIN_OUTAGE_ROWS,
            evidence=Evidence("requests sent during the outage", during.num_rows, MIN_OUTAGE_ROWS),
            description="requests sent while every instance knew Redis was gone",
            section=SECTION,
        ),
        checks.at_least(
            f"success_during_outage_{kind}",
            None if rate is None else 100.0 * rate,
            threshold,
            evidence=Evidence(
                "pattern executions sent during the outage", executions.num_rows, MIN_OUTAGE_ROWS
            ),
            unit="%",
            description="pattern executions sent during the outage that succeeded",
            section=SECTION,
        ),
        checks.at_least(
            f"degraded_marked_{kind}",
            float(_count(ok, degraded=True)),
            1,
            evidence=Evidence("successful outage responses", ok.num_rows, 1),
            description="successful outage responses marked degraded",
            section=SECTION,
        ),
        checks.at_least(
            f"local_cache_fallback_{kind}",
            float(_count(ok, cache_tier="l1", degraded=True)),
            1,
            evidence=Evidence("successful outage responses", ok.num_rows, 1),
            description="outage responses served from the in-process L1 cache",
            section=SECTION,
        ),
        bounded(
            f"automatic_reconnection_{kind}",
            seconds(outage["t_healed_ns"], outage["t_reconnected_ns"]),
            RECONNECT_BOUND_S,
            what="every instance's /health reported Redis ok again, without restarts",
            evidence=Evidence("instances polled", instances, 1),
            section=SECTION,
        ),
        visibility_criterion(
            f"acked_writes_visible_after_recovery_{kind}",
            cached,
            reports,
            "cached",
            evidence=Evidence("marked writes sent during the outage", cached.attempted, instances),
            section=SECTION,
        ),
        visibility_criterion(
            f"acked_writes_durable_{kind}",
            durable,
            reports,
            "database",
            evidence=Evidence("marked writes sent during the outage", durable.attempted, instances),
            section=SECTION,
        ),
    ]
    numbers = {
        "outage_s": seconds(outage["t_applied_ns"], outage["t_healed_ns"]),
        "noticed_s": seconds(outage["t_applied_ns"], outage["t_noticed_ns"]),
        "reconnect_s": seconds(outage["t_healed_ns"], outage["t_reconnected_ns"]),
        "rows_during_outage": during.num_rows,
        "success_rate_during_outage": rate,
        "writes_during_outage": cache_rows.count_by(
            cache_rows.rows_of(during, method="store_memory"), "error_reason"
        ),
        "degraded_during_outage": _count(during, degraded=True),
        "l1_hits_during_outage": _count(during, cache_tier="l1"),
        "timeouts_by_second": _timeouts_by_second(table, outage["t_applied_ns"]),
        "errors_during_outage": metrics.error_frequency(during),
        "latency_during_outage_ms": metrics.latency_exact(during, successful_only=False),
        "writes": {
            "attempted": cached.attempted,
            "acked": cached.acked,
            "refused": cached.refused,
            "unknown": cached.unknown,
        },
    }
    return found, numbers


def _propagation_criterion(facts: dict[str, Any], args: argparse.Namespace) -> Criterion:
    """Eventual mode's promise: every instance applies another instance's invalidation within
    the stated bound (`--staleness-bound-ms`; gating only then), measured by the instances
    before the first fault."""
    outages = list(facts["outages"].values())
    delays = outages[0]["propagation_ms"] if outages else facts.get("propagation_ms", {})
    worst = max((d["max"] for d in delays.values() if d.get("max") is not None), default=None)
    samples = sum(int(d.get("count") or 0) for d in delays.values())
    bound = args.staleness_bound_ms
    return checks.at_most(
        "propagation_within_bound",
        worst,
        bound if bound is not None else PROPAGATION_REPORT_MS,
        evidence=Evidence("invalidation messages timed by the instances", samples, 3),
        unit="ms",
        description="slowest invalidation from another instance, publish → applied, before the "
        "first fault",
        section=SECTION,
        critical=args.cache_mode == "eventual" and bound is not None,
    )


def _timeouts_by_second(table: pa.Table, t0_ns: int | None) -> dict[int, int]:
    """Server timeouts (-32001) by send second relative to the fault."""
    if t0_ns is None:
        return {}
    rows = cache_rows.rows_of(table, error_code=-32001)
    out: dict[int, int] = {}
    for t in rows.column("t_send_ns").to_pylist():
        second = int((t - t0_ns) // 1_000_000_000)
        out[second] = out.get(second, 0) + 1
    return dict(sorted(out.items()))


def _count(table: pa.Table, **equal: Any) -> int:
    return cache_rows.rows_of(table, **equal).num_rows


def _recovery_criteria(recovery: pa.Table) -> list[Criterion]:
    ok = recovery.filter(pc.equal(recovery.column("success"), True))
    clean = ok.num_rows - _count(ok, degraded=True)
    return [
        checks.at_least(
            "recovery_not_degraded",
            100.0 * clean / ok.num_rows if ok.num_rows else None,
            100.0,
            evidence=Evidence("successful recovery responses", ok.num_rows, 1),
            unit="%",
            description="successful responses of the recovery phase not marked degraded",
            section=SECTION,
        ),
        checks.at_least(
            "l2_hits_after_reconnect",
            float(_count(ok, cache_tier="l2")),
            1,
            evidence=Evidence("successful recovery responses", ok.num_rows, 1),
            description="recovery responses served from Redis (L2) again",
            section=SECTION,
        ),
    ]


EXPERIMENT = RedisFailoverExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
