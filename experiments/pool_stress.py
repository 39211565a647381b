"""[1.3] Database connection pool stress: 50 concurrent memory-pattern requests, pool 10 + 20.

Every instance runs with TMWS_POOL_MIN=10, TMWS_POOL_MAX=30 (pool 10, overflow 20). Fifty
requests that each need the database (memory pattern, use_cache=false) are released at once at
ONE instance, so they exceed its pool as the plan intends. The service holds a connection only for
each query (milliseconds), so at full speed 50 requests never occupy 30 connections at once and
nothing would queue; the driver therefore makes the database momentarily slow — an exclusive lock
on `memories` held until every pooled connection of the target is blocked behind it (at most
`HOLD_MAX_S`, inside the memory patterns' 2 s budget) — as any slow query would. Pool figures (peak in use, callers
waiting, acquisition waits, exhaustions) come from the instances' own /health before and after;
a leak check compares pg_stat_activity and every pool's in-use count before and after.
A first burst of the same size warms the pool (connections are opened on demand and kept), so the
measured burst meets open connections rather than connection set-up. A memory pattern whose pool
wait ran out would fall back to the LLM (route llm_fallback) rather
than fail, so the zero-exceptions check counts those rows too. `graceful_queuing` needs evidence
that queuing happened at all: at least one borrow that began while every connection of the
target's pool was out (the pool's `queued_total`), and none timed out.

    python experiments/pool_stress.py --scale ci --requests 80 --out /tmp/pool
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
from typing import Any

from analysis import checks, criteria
from analysis.checks import Criterion, Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, Outcome, main
from experiments.support.driver import DriverAgents, DriverLog
from experiments.support.instances import (
    connection,
    count_connections,
    fetchval,
    health_all,
    pool_figures,
    wait_for,
)
from experiments.support.rows import error_codes, failures, latency_breakdown, where
from experiments.support.seed import delete_seeded, seed_memories, synthetic_notes

SECTION = "1.3"
DB_ERROR_CODES = {-32002}  # DependencyUnavailable / DatabaseUnavailable
DB_ERROR_REASONS = {"pool_exhausted", "database_unavailable", "dependency_unavailable"}
SEED_NOTES = 40
#: The database is held slow (an exclusive lock on memories) until every pooled connection of
#: the target is blocked in it, at most this long: well inside the memory patterns' 2 s budget.
HOLD_MAX_S = 0.8
#: ...and this much longer, so the requests beyond the pool ask for a connection meanwhile.
EXTRA_HOLD_S = 0.1
QUERIES = (
    "what do I know about the {}",
    "find my notes about the {}",
    "search my memories for the {}",
    "what did we decide about the {}",
)
TOPICS = (
    "deployment",
    "redis failover",
    "release schedule",
    "database migration",
    "api rate limits",
)


def queries(n: int) -> list[str]:
    """`n` memory-pattern queries (distinct where possible)."""
    out = [q.format(t) for t in TOPICS for q in QUERIES]
    return (out * (n // len(out) + 1))[:n]


class PoolStress(Experiment):
    scenario = "pool_stress"
    section = SECTION
    title = "connection pool stress: 50 concurrent DB-bound requests against pool 10 + overflow 20"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--requests", type=int, default=50, help="concurrent requests")
        parser.add_argument("--pool-min", type=int, default=10, help="TMWS_POOL_MIN (pool size)")
        parser.add_argument(
            "--pool-max", type=int, default=30, help="TMWS_POOL_MAX (pool+overflow)"
        )

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_POOL_MIN": str(args.pool_min), "TMWS_POOL_MAX": str(args.pool_max)}

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        assert run.infra is not None
        url = run.infra.database_url
        namespace = f"perf-seed-{run.run_id}"
        asyncio.run(seed_memories(url, namespace, synthetic_notes(SEED_NOTES), shared=True))
        log = DriverLog(run.run_id, self.scenario)
        try:
            wall_s, before, before_pg, slowdown = asyncio.run(
                self._burst(run, log, args.requests, url, args.pool_max)
            )
            after = pool_figures(asyncio.run(health_all(run, strict=True)))
            after_pg = asyncio.run(count_connections(url))
        finally:
            asyncio.run(delete_seeded(url, namespace))
        target = run.instance_infos[0].instance_id
        return {
            "target_instance": target,
            "requests": args.requests,
            "pool_min": args.pool_min,
            "pool_max": args.pool_max,
            "wall_s": round(wall_s, 3),
            "slowdown": slowdown,
            "pool_before": before,
            "pool_after": after,
            "pg_connections_before": before_pg,
            "pg_connections_after": after_pg,
            DRIVER_BATCHES: log.batches(),
        }

    async def _burst(
        self, run: ClusterRun, log: DriverLog, n: int, url: str, pool_max: int
    ) -> tuple[float, dict[str, Any], int, dict[str, Any]]:
        """Warm-up burst, then the pool figures and connection count, then the measured burst
        against a momentarily slow database: (its wall time, figures before it, connections
        before it, what the slowdown did)."""
        ids = [f"{run.run_id}-pool-{i:03d}" for i in range(n)]
        # Every agent's home is instance 0: the burst lands on one pool, as in the plan.
        async with DriverAgents(log, run.endpoints(), ids, [0] * n) as agents:
            texts = queries(n)
            # A first burst of the same size opens the pool's connections (asyncpg opens them
            # on demand and keeps them): the load then meets a warm pool, as in steady service,
            # instead of measuring connection set-up.
            await agents.burst("warmup", texts, 60.0, use_cache=False)
            before = pool_figures(await health_all(run, strict=True))
            before_pg = await count_connections(url)
            async with connection(url) as conn, conn.transaction():
                # Recalls now wait for the lock while holding their pooled connections, as
                # behind any slow query: once the pool is full, later callers must queue.
                await conn.execute("LOCK TABLE memories IN ACCESS EXCLUSIVE MODE")
                load = asyncio.create_task(agents.burst("load", texts, 60.0, use_cache=False))
                blocked, held_s = await wait_for(
                    lambda: _lock_waiters(url),
                    lambda waiting: waiting >= pool_max,
                    timeout_s=HOLD_MAX_S,
                    interval_s=0.02,
                )
                # Give the callers beyond the pool time to ask for a connection.
                await asyncio.sleep(EXTRA_HOLD_S)
            wall_s = await load
        return wall_s, before, before_pg, {"blocked_in_db": blocked, "held_s": held_s}

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        rows = where(result.table, phase="load")
        timing = args.scale != "ci"
        failed = failures(rows)
        db_errors = sum(
            1
            for code, reason in zip(
                failed.column("error_code").to_pylist(),
                failed.column("error_reason").to_pylist(),
                strict=True,
            )
            if code in DB_ERROR_CODES or reason in DB_ERROR_REASONS
        )
        fallbacks = where(rows, route="llm_fallback")
        target = facts["target_instance"]
        pool = facts["pool_after"].get(target, {})
        before = facts["pool_before"].get(target, {})
        after = facts["pool_after"]
        in_use_after = sum(int(p.get("in_use", 0)) for p in after.values())
        growth = sum(
            int(facts["pool_after"][i].get("size", 0)) - int(facts["pool_before"][i].get("size", 0))
            for i in facts["pool_after"]
            if i in facts["pool_before"]
        )
        extra_pg = facts["pg_connections_after"] - facts["pg_connections_before"]
        exhausted = int(pool.get("exhausted_total", 0)) - int(before.get("exhausted_total", 0))
        queued = queued_borrows(before, pool)
        judged: list[Criterion] = [
            checks.equals(
                "database_exceptions",
                float(db_errors + fallbacks.num_rows),
                0,
                evidence=Evidence("load requests", rows.num_rows, 1),
                description="rows failed with a database/pool error, or answered by the LLM "
                "because the memory pattern failed",
                section=SECTION,
            ),
            checks.holds(
                "graceful_queuing",
                exhausted == 0 and db_errors == 0,
                measured=f"{queued} borrows queued for a full pool, peak in use "
                f"{pool.get('in_use_peak')}/{pool.get('max')}, peak waiting "
                f"{pool.get('waiting_peak')}, max wait {pool.get('acquire_wait_ms_max')} ms, "
                f"exhausted {exhausted}",
                expectation="callers beyond the pool wait for a connection; none times out",
                evidence=Evidence(
                    "requests that waited for a connection of a full pool", queued, 1
                ),
                section=SECTION,
            ),
            criteria.success_rate_criterion(rows, 96.0, section=SECTION),
            criteria.duration_criterion(rows, 60.0, section=SECTION, critical=timing),
            checks.holds(
                "no_connection_leak",
                in_use_after == 0 and extra_pg <= max(growth, 0),
                evidence=Evidence("instances whose pool was read after the load", len(after), 1),
                measured=f"pools in use after: {in_use_after}; pg_stat_activity "
                f"{facts['pg_connections_before']} → {facts['pg_connections_after']}, "
                f"pool growth {growth}",
                expectation="every pool back to 0 in use; new server sessions ≤ pool growth",
                section=SECTION,
            ),
        ]
        return Outcome(
            judged,
            metrics={
                "pool_target_after": pool,
                "pool_wait_ms_max": pool.get("acquire_wait_ms_max"),
                "pool_wait_ms_avg": pool.get("acquire_wait_ms_avg"),
                "pool_in_use_peak": pool.get("in_use_peak"),
                "pool_waiting_peak": pool.get("waiting_peak"),
                "pool_queued_borrows": queued,
                "pool_utilisation_peak": (pool.get("in_use_peak") or 0) / (pool.get("max") or 1),
                "load_latency": latency_breakdown(rows),
                "errors_by_code": error_codes(rows),
            },
        )


def queued_borrows(before: dict[str, Any], after: dict[str, Any]) -> int | None:
    """Borrows that found the pool full during the load (None: the server does not count them)."""
    if "queued_total" not in after:
        return None
    return int(after["queued_total"]) - int(before.get("queued_total", 0))


async def _lock_waiters(url: str) -> int:
    """Backends of this database waiting for a lock (the recalls behind the driver's)."""
    return int(
        await fetchval(
            url,
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
    )


EXPERIMENT = PoolStress()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
