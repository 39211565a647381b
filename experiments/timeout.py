"""[6.2] Pattern execution timeout: a pattern that holds a database connection for 8 s, 5 s budget.

Instances run with TMWS_ENABLE_TEST_PATTERNS=true, which loads `slow_test_pattern` (trigger
"slow pattern test": `slow_tool` holds a pooled connection in `pg_sleep(8)`, timeout_s 5). The
driver sends it from sessions on every instance while the swarms keep sending fast requests. Each
slow request must come back as -32001 after about 5 s; right after the replies no `pg_sleep` may
still run in PostgreSQL and every pool must be back to zero connections in use — checked while an
uncancelled `pg_sleep(8)` would still be running (at least `LEAK_MARGIN_S` before its natural
end), so a sleep that was never cancelled cannot pass by ending on its own. Fewer than 5 slow requests go
to each instance, so the pattern's own timeout learning (demotion after 5 failures) stays out
of the way; the stats it keeps are recorded as facts.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from analysis import checks
from analysis.checks import Criterion, Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import Experiment, Facts, main
from experiments.runner import Outcome as Verdict
from experiments.support.driver import DriverLog
from experiments.support.instances import (
    connection,
    fetchval,
    health_all,
    pool_figures,
    scale_name,
    sized,
)
from experiments.support.rows import between, error_code_criterion, success_pct, where
from service.client import WsClient

SECTION = "6.2"
SLOW_QUERY = "slow pattern test"
THRESHOLD_S = 5.0
LIMIT_MS = 5500.0
#: How long slow_test_pattern's pg_sleep runs when nobody cancels it (configs/patterns.yaml).
SLEEP_S = 8.0
#: The leak check must be over this long before an uncancelled sleep would end by itself.
LEAK_MARGIN_S = 0.5
#: slow requests per instance (kept below the 5 failures that demote a pattern)
SLOW_PER_INSTANCE = {"ci": 2, "laptop": 4, "cloud": 4}
SWARM_REQUESTS = {"ci": 4, "laptop": 10, "cloud": 20}
_PG_SLEEP_SQL = (
    "SELECT count(*) AS n FROM pg_stat_activity WHERE state = 'active'"
    " AND query ILIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
)


@dataclass(frozen=True)
class Release:
    """What the leak check saw (`_released`): PostgreSQL's sleeps and the pools' use."""

    pg_sleep_at_reply: int
    pool_in_use_at_reply: list[Any]
    pg_sleep_last: int
    pool_in_use_last: list[Any]
    leak_check_looks: int
    leak_check_s: float
    #: how long an uncancelled sleep still had to run when the check began
    sleep_left_at_check_s: float
    #: the work was gone before the deadline (a release seen later proves nothing)
    released: bool
    released_before_natural_end_s: float


@dataclass(kw_only=True)
class TimeoutFacts(Facts):
    """What `drive` measured for `check`."""

    slow_sent: int
    t_slow_start_ns: int
    t_slow_end_ns: int
    release: Release
    #: `get_pattern_stats` of slow_test_pattern, one per instance
    pattern_stats: list[dict[str, Any] | None] = field(default_factory=list)


class TimeoutExperiment(Experiment):
    scenario = "timeout"
    section = SECTION
    title = "Pattern execution timeout handling (5 s budget, 8 s pattern)"

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_ENABLE_TEST_PATTERNS": "true"}

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> TimeoutFacts:
        scale = scale_name(run)
        background = {
            "mix": [
                {"method": "ping", "weight": 1},
                {
                    "method": "execute_pattern",
                    "weight": 2,
                    "params": {"query": "execute tool test"},
                },
                {"method": "get_agent_info", "weight": 1},
            ],
            "requests_per_agent": sized(SWARM_REQUESTS, scale),
            "think_time_ms": [500, 2500],
            "request_timeout_s": 20,
        }
        handle = run.start_phase("other-requests", background)
        log = DriverLog(run.run_id, self.scenario)
        assert run.infra is not None
        facts = asyncio.run(
            self._drive(run, log, sized(SLOW_PER_INSTANCE, scale), run.infra.database_url)
        )
        handle.wait()
        facts.driver_batches = log.batches()
        return facts

    async def _drive(
        self, run: ClusterRun, log: DriverLog, per_instance: int, database_url: str
    ) -> TimeoutFacts:
        sessions = await asyncio.gather(
            *(
                WsClient.connect(info.ws_url, f"{run.run_id}-slow-{i}-{k}")
                for i, info in enumerate(run.instance_infos)
                for k in range(per_instance)
            )
        )
        try:
            started_ns = time.time_ns()
            await asyncio.gather(
                *(
                    log.call(s, "execute_pattern", {"query": SLOW_QUERY, "use_cache": False},
                             phase="slow", key="slow", timeout_s=30, pattern_name="slow_test_pattern")
                    for s in sessions
                )
            )  # fmt: skip
            ended_ns = time.time_ns()
            release = await _released(run, database_url, started_ns)
            stats = await asyncio.gather(
                *(log.call(s, "get_pattern_stats", {"pattern_name": "slow_test_pattern"},
                           phase="after", key="stats") for s in sessions[::per_instance])
            )  # fmt: skip
        finally:
            await asyncio.gather(*(s.close() for s in sessions))
        return TimeoutFacts(
            slow_sent=len(sessions),
            t_slow_start_ns=started_ns,
            t_slow_end_ns=ended_ns,
            release=release,
            pattern_stats=[
                ((c.result or {}).get("patterns") or {}).get("slow_test_pattern") for c in stats
            ],
        )

    def check(self, result: RunResult, facts: TimeoutFacts, args: argparse.Namespace) -> Verdict:
        table = result.table
        release = facts.release
        slow = where(table, phase="slow")
        lat = slow.column("latency_ms").to_pylist()
        other = between(
            where(table, phase="other-requests"), facts.t_slow_start_ns, facts.t_slow_end_ns
        )
        found: list[Criterion] = [
            error_code_criterion(
                "timeout_detected_and_enforced",
                slow,
                -32001,
                reason_contains="timeout",
                section=SECTION,
                description="every slow pattern (8 s of work) is cancelled and answered -32001",
            ),
            checks.equals(
                "client_receives_timeout_error",
                float(where(slow, error_code=-32001).num_rows),
                facts.slow_sent,
                evidence=Evidence("slow requests sent", facts.slow_sent, 1),
                description="timeout errors received, one per slow request sent",
                section=SECTION,
            ),
            checks.at_most(
                "timeout_latency_max",
                max(lat) if lat else None,
                LIMIT_MS,
                evidence=Evidence("slow requests answered", len(lat), 1),
                description=f"slowest timeout reply (budget {THRESHOLD_S:g} s)",
                unit="ms",
                section=SECTION,
                critical=args.scale != "ci",
            ),
            checks.at_least(
                "timeout_latency_min",
                min(lat) if lat else None,
                THRESHOLD_S * 1000 * 0.95,
                evidence=Evidence("slow requests answered", len(lat), 1),
                description="fastest timeout reply (not cut short before the budget)",
                unit="ms",
                section=SECTION,
                critical=args.scale != "ci",
            ),
            checks.holds(
                "no_resource_leaks",
                release.released,
                measured=f"pg_sleep running: {release.pg_sleep_at_reply} at the replies, "
                f"{release.pg_sleep_last} at the last look; pool in_use "
                f"{release.pool_in_use_last}; "
                + (
                    f"released {release.released_before_natural_end_s:.2f}s before an "
                    "uncancelled sleep would have ended"
                    if release.released
                    else f"not released within {release.leak_check_s:.2f}s"
                ),
                expectation="right after the timeouts, no pg_sleep left in PostgreSQL and every "
                f"pool back to 0 in use, ≥ {LEAK_MARGIN_S:g}s before the sleep could end itself",
                evidence=Evidence(
                    "s an uncancelled pg_sleep still had to run when the leak check began",
                    round(release.sleep_left_at_check_s, 3),
                    LEAK_MARGIN_S,
                ),
                section=SECTION,
            ),
            checks.at_least(
                "other_requests_unaffected",
                success_pct(other),
                99.0,
                evidence=Evidence(
                    "swarm requests sent while slow patterns ran", other.num_rows, 10
                ),
                description="swarm requests sent while slow patterns ran that succeeded",
                unit="%",
                section=SECTION,
            ),
        ]
        return Verdict(found, metrics={"timeout_latency_ms": lat})


async def _released(run: ClusterRun, database_url: str, t_start_ns: int) -> Release:
    """Look at PostgreSQL and every pool until the slow work is gone, but only until
    `LEAK_MARGIN_S` before an uncancelled sleep (sent at `t_start_ns`, so it cannot end before
    `t_start_ns + SLEEP_S`) would end by itself. A look counts at its end: what it saw was
    true no later than that."""
    natural_end_ns = t_start_ns + int(SLEEP_S * 1e9)
    deadline_ns = natural_end_ns - int(LEAK_MARGIN_S * 1e9)
    check_start_ns = time.time_ns()
    looks: list[tuple[int, list[Any], int]] = []
    async with connection(database_url) as conn:
        while True:
            sleeps, health = await asyncio.gather(conn.fetchval(_PG_SLEEP_SQL), health_all(run))
            in_use = [p.get("in_use") for p in pool_figures(health).values()]
            looks.append((int(sleeps), in_use, time.time_ns()))
            clear = looks[-1][0] == 0 and bool(in_use) and all(n == 0 for n in in_use)
            if clear or looks[-1][2] >= deadline_ns:
                break
            # No event tells us PostgreSQL dropped the query: poll, bounded by the deadline.
            await asyncio.sleep(0.05)
    sleeping, in_use, seen_ns = looks[-1]
    return Release(
        pg_sleep_at_reply=looks[0][0],
        pool_in_use_at_reply=looks[0][1],
        pg_sleep_last=sleeping,
        pool_in_use_last=in_use,
        leak_check_looks=len(looks),
        leak_check_s=(seen_ns - check_start_ns) / 1e9,
        sleep_left_at_check_s=(natural_end_ns - check_start_ns) / 1e9,
        # A release seen after the deadline proves nothing: the sleep might have ended itself.
        released=clear and seen_ns < deadline_ns,
        released_before_natural_end_s=(natural_end_ns - seen_ns) / 1e9,
    )


async def _pg_sleeps(database_url: str) -> int:
    """Queries still sleeping in PostgreSQL (the slow pattern's `pg_sleep`)."""
    return int(await fetchval(database_url, _PG_SLEEP_SQL))


EXPERIMENT = TimeoutExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
