"""Plan 1.1 — 50+ simultaneous agent sessions: 50 agents × 3–7 random mixed pattern requests.

Every agent holds its own session (spread over three instances) and sends 3–7 `execute_pattern`
requests of mixed query types (infrastructure, memory, hybrid) within ~30 s at laptop scale.
Agents work in teams (namespaces shared across instances), so answers are shared through the
cache as they would be in a team — and, as in a team, some requests store a note (about one in
ten, on the team's tracked topics, in the team's notes namespace) while teammates on every
instance recall those notes, so a race between a write and the cached answers of the other
instances can happen and be seen. Judged from the rows: success
≥ 95 %, average latency < 300 ms (gating beyond ci), cache hit rate > 70 % after warm-up, no
deadlocks (no execution or client timeouts, no pool exhaustion, no database errors) and no race
conditions: the coherency checker (stale reads by generation and by content, read-your-writes,
monotonic reads, duplicate fills, routing) finds nothing, over enough comparable pairs.
`--duration S` repeats the load for a soak; the runner's leak check reads resources.parquet.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import sys
from typing import Any

from actors.recorder import CLIENT_TIMEOUT
from analysis import criteria, metrics
from analysis.coherency import Needs, check_coherency
from cluster.run import ClusterRun, RunResult
from experiments import cache_rows
from experiments.runner import Experiment, Outcome, main, run_load

#: query → expected route (checked with `tmws route`)
QUERIES = {
    "show the system status": "infrastructure",
    "execute tool test": "infrastructure",
    "who am I": "infrastructure",
    "what do we know about the release plan": "memory",
    "what did we decide about the database schema": "memory",
    "find my notes about redis failover": "memory",
    "catch me up on what I was doing": "hybrid",
    "give me a status report with my notes and system health": "hybrid",
    "troubleshoot the outage using past incidents and current health": "hybrid",
}
#: Per scale: agents, think time (ms) between an agent's requests, teams, tracked topics per team.
SIZES: dict[str, dict[str, Any]] = {
    "ci": {"agents": 50, "think_ms": [0, 200], "teams": 5, "topics": 2},
    "laptop": {"agents": 50, "think_ms": [3000, 9000], "teams": 5, "topics": 2},
    "cloud": {"agents": 500, "think_ms": [3000, 9000], "teams": 50, "topics": 2},
}
SECTION = "1.1"
TIMEOUT = -32001
POOL_OR_DEPENDENCY = {-32002, -32003}


def load_workload(think_ms: list[int], teams: int, topics: int) -> dict[str, Any]:
    """3–7 random requests per agent: mixed-type patterns, tracked recalls and team stores."""
    return {
        "mix": [
            {"method": "execute_pattern", "weight": 6},
            {"method": "execute_pattern", "weight": 3, "tracked": True},
            {"method": "store_memory", "weight": 1, "tracked": True},
        ],
        "requests_per_agent": [3, 7],
        "think_time_ms": think_ms,
        "queries": list(QUERIES),
        "teams": teams,
        "topics": topics,
        # Notes live in a namespace of their own (team:<run>-<k>-notes): their stores race the
        # other instances' cached answers there without invalidating the team's other answers
        # (the plan's hit rate is about those).
        "tracked_suffix": "-notes",
        "request_timeout_s": 20,
    }


class ConcurrencyExperiment(Experiment):
    scenario = "concurrency"
    section = SECTION
    title = "50+ simultaneous agent sessions, 3-7 mixed pattern requests each"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--agents", type=int, default=None, help="agents (plan: 50)")

    def agent_count(self, args: argparse.Namespace) -> int | None:
        return args.agents or SIZES.get(args.scale, SIZES["laptop"])["agents"]

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        size = SIZES.get(args.scale, SIZES["laptop"])
        load = load_workload(size["think_ms"], size["teams"], size["topics"])
        # Warm-up reads only: every instance caches the mixed queries and the tracked topics.
        warmup = {**load, "mix": load["mix"][:2], "think_time_ms": [0, 0], "requests_per_agent": 3}
        run.phase("warmup", warmup)
        load = {**load, "seed": args.seed}
        phases = run_load(run, "load", load, args.duration)
        return {
            "agents": run.topology.agent_count,
            "sessions": dict(run.sessions),
            "load_phases": phases,
            "global_scope_patterns": cache_rows.global_scope_patterns(),
            "pattern_ttls": cache_rows.pattern_ttls(),
            "cache_counters": cache_rows.cache_counters(run),
        }

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        table = cache_rows.scope_namespaces(result.table, facts["global_scope_patterns"])
        load = cache_rows.rows_of(table, phases=facts["load_phases"])
        coherency = check_coherency(
            table,
            mode="strict",
            section=SECTION,
            content=True,
            fill_ttl_s=facts["pattern_ttls"],
            needs=Needs(content_pairs=10, content_reads=20),
        )
        timing = args.scale != "ci"
        found = [
            criteria.success_rate_criterion(load, 95.0, section=SECTION),
            criteria.avg_latency_criterion(load, 300.0, section=SECTION, critical=timing),
            criteria.hit_rate_criterion(table, 70.0, section=SECTION),
            criteria.error_count_criterion(
                table, "no_deadlocks", codes={TIMEOUT, CLIENT_TIMEOUT}, section=SECTION
            ),
            criteria.error_count_criterion(
                table, "no_pool_or_database_errors", codes=POOL_OR_DEPENDENCY, section=SECTION
            ),
            criteria.error_count_criterion(
                table, "no_race_conditions_internal", codes={-32603}, section=SECTION
            ),
        ]
        routes = cache_rows.rows_of(load, method="execute_pattern", success=True)
        extra = {
            "agents": facts["agents"],
            "load_requests": load.num_rows,
            "requests_per_agent_mean": load.num_rows / max(1, metrics.distinct(load, "agent_id")),
            "load_latency_ms": metrics.latency_exact(load),
            "routes": cache_rows.count_by(routes, "route"),
            "race_conditions": coherency.stale.count
            + coherency.read_your_writes.count
            + coherency.monotonic.count
            + len(coherency.duplicate_fills)
            + len(coherency.routing)
            + (coherency.content.violations if coherency.content else 0),
            "rows_by_instance": cache_rows.per_instance_counts(table),
        }
        return Outcome(found, extra, coherency)


EXPERIMENT = ConcurrencyExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
