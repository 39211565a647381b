"""Plan 4.3 — multi-instance cache coherency: three instances, one Redis, concurrent team traffic.

Agents are grouped into team namespaces (`team:<run>-<k>`) whose members start on every instance
(see `actors.workload.Workload.team_namespace`). They write (`store_memory`, `invalidate_cache`
of the team and, now and then, of "*") and read (`execute_pattern` with memory-recall queries,
cache on; `recall_memory`) the team namespace concurrently, so a write through one instance is
read through the other two. Most stores and reads are *tracked*: a store's content is exactly one
of the team's topics and the reads recall that topic, so an answer must include every memory of
its topic acknowledged before it began — the content check judges answers by what they contain,
whatever generation the server claims.

From the rows alone the run judges, each criterion with the evidence it needs: zero stale reads
by generation (namespace and global) and by content, read-your-writes and monotonic reads (strict
mode), ≥ 95 % of reads and writes carrying a generation, propagation delay per instance (both
modes), updates visible across all instances, no duplicate fills (one instance computes each
namespace+key+generation), consistent routing and invalidation, rows from three instances, enough
distinct agents, nothing lost.

    python experiments/coherency.py --scale ci --out DIR [--cache-mode eventual] [--broken-cache]

`--broken-cache` starts the instances with TMWS_CACHE_SKIP_INVALIDATION_PUBLISH=true: bumps are not
published and L1 hits skip the generation check, so instances serve stale L1 entries — the
checker must then report stale reads and the run exits 1.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import sys
from typing import Any

import pyarrow.compute as pc

from analysis import checks, criteria, metrics
from analysis.checks import Evidence
from analysis.coherency import Needs, check_coherency
from cluster.run import ClusterRun, RunResult
from experiments import cache_rows
from experiments.runner import Experiment, Outcome, main, run_load

#: Team queries that route to namespace-scoped memory patterns (checked with `tmws route`).
TEAM_QUERIES = (
    "what do we know about the release plan",
    "what did we decide about the database schema",
    "find my notes about redis failover",
)
#: Per scale: teams, load requests per agent, minimum distinct agents expected in the history,
#: tracked topics per team (few enough that each is read before and after its stores).
SIZES: dict[str, dict[str, Any]] = {
    # 300 agents on 2 cores: paced like laptop (~55 req/s offered). Faster pacing overloads the
    # embedding work (every store invalidates its team, so most reads recompute): memory
    # patterns time out at their 2 s budget, get demoted, and the LLM answers instead, which
    # leaves the coherency checks too few checkable reads.
    "ci": {"teams": 10, "requests": 4, "min_agents": 100, "think_ms": [3000, 8000], "topics": 3},
    # 400 agents on 2 cores, ~130 req/s offered (400 agents / 3 s mean think): the plan's
    # 100 req/s with the start staggered (see `load_workload`); six requests each so the steady
    # state, not the agents finishing one by one, makes most of the phase.
    "laptop": {
        "teams": 20,
        "requests": 6,
        "min_agents": 300,
        "think_ms": [1500, 4500],
        "topics": 4,
    },
    "cloud": {
        "teams": 60,
        "requests": 20,
        "min_agents": 1000,
        "think_ms": [200, 1000],
        "topics": 8,
    },
}
#: Default weight (of ~10) of `invalidate_cache("*")` in the load: global bumps, so the checker
#: judges the global generation every cached answer depends on.
GLOBAL_INVALIDATION_WEIGHT = 0.25
#: Seconds over which the warm-up's reads are spread.
WARMUP_S = 3.0
#: Connections per instance beyond ci (ci's preset sets 10): 3 x 15 stays well inside the
#: embedded PostgreSQL's 100 connections.
POOL_MAX = "15"
SECTION = "4.3"


def sizes(scale: str) -> dict[str, int]:
    """Scenario sizes of a preset name (a custom YAML preset gets the laptop sizes)."""
    return SIZES.get(scale, SIZES["laptop"])


def warmup_workload(teams: int, topics: int, agents: int) -> dict[str, Any]:
    """About one read per agent (a team query or a tracked topic) spread over `WARMUP_S`, so all
    three instances hold cached answers of every team before the first store. Open loop: a
    burst of every agent at once is a thundering herd that, on a small machine, times out
    the instances' Redis calls and leaves the warm-up degraded."""
    rate = max(1.0, agents / WARMUP_S)
    return {
        "mix": [
            {"method": "execute_pattern", "weight": 1},
            {"method": "execute_pattern", "weight": 2, "tracked": True},
        ],
        "rate": {"start_rate": rate, "peak_rate": rate, "sustain_s": WARMUP_S},
        "queries": list(TEAM_QUERIES),
        "teams": teams,
        "topics": topics,
        "request_timeout_s": 20,
    }


def load_workload(
    teams: int,
    requests: int,
    think_ms: list[int],
    topics: int,
    global_weight: float = GLOBAL_INVALIDATION_WEIGHT,
) -> dict[str, Any]:
    """Mixed reads and writes on the team namespaces, all agents concurrently; most of them on
    the tracked topics (content check), a few global invalidations (global generation).

    Each agent's first send waits a random part of one think time (`staggered_start`): the plan
    (4.3) asks for concurrent traffic from every instance, not for every agent to fire at the
    same instant, and with all 400 first sends at t=0 that one burst was the run's p95 (1.9 s
    against ~60-120 ms for the rest of the phase)."""
    mix: list[dict[str, Any]] = [
        {"method": "execute_pattern", "weight": 2.5},
        {"method": "execute_pattern", "weight": 3.5, "tracked": True},
        {"method": "recall_memory", "weight": 0.75, "params": {"limit": 3}},
        {"method": "recall_memory", "weight": 1, "params": {"limit": 3}, "tracked": True},
        {"method": "store_memory", "weight": 1.5, "tracked": True},
        {"method": "invalidate_cache", "weight": 0.5},
    ]
    if global_weight > 0:
        mix.append(
            {"method": "invalidate_cache", "weight": global_weight, "params": {"namespace": "*"}}
        )
    return {
        "mix": mix,
        "requests_per_agent": requests,
        "think_time_ms": think_ms,
        "queries": list(TEAM_QUERIES),
        "teams": teams,
        "topics": topics,
        "request_timeout_s": 20,
        "staggered_start": True,
    }


class CoherencyExperiment(Experiment):
    scenario = "coherency"
    section = SECTION
    title = "Multi-instance cache coherency (three instances, one Redis, team namespaces)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cache-mode",
            choices=("strict", "eventual"),
            default="strict",
            help="TMWS_CACHE_MODE of the instances (and the checker's mode)",
        )
        parser.add_argument(
            "--broken-cache",
            action="store_true",
            help="skip invalidation publishing (deliberately broken): the checker must fail",
        )
        parser.add_argument(
            "--staleness-bound-ms",
            type=float,
            default=None,
            help="eventual mode: stale reads begun later than this after the write fail the run",
        )
        parser.add_argument(
            "--teams", type=int, default=None, help="team namespaces (default by scale)"
        )
        parser.add_argument(
            "--requests-per-agent", type=int, default=None, help="load requests per agent"
        )
        parser.add_argument(
            "--global-invalidations",
            type=float,
            default=GLOBAL_INVALIDATION_WEIGHT,
            help="weight (of ~10) of invalidate_cache('*') in the load; 0 = none, and the "
            "global-generation check is then not demanded",
        )

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        env = {"TMWS_CACHE_MODE": args.cache_mode}
        if args.scale != "ci":
            env["TMWS_POOL_MAX"] = POOL_MAX
        if args.broken_cache:
            env["TMWS_CACHE_SKIP_INVALIDATION_PUBLISH"] = "true"
            env["TMWS_ENABLE_TEST_PATTERNS"] = "true"  # injected bugs are refused without it
        return env

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        size = sizes(args.scale)
        teams = args.teams or size["teams"]
        requests = args.requests_per_agent or size["requests"]
        run.phase("warmup", warmup_workload(teams, size["topics"], run.topology.agent_count))
        load = {
            **load_workload(
                teams, requests, size["think_ms"], size["topics"], args.global_invalidations
            ),
            "seed": args.seed,
        }
        phases = run_load(run, "load", load, args.duration)
        return {
            "teams": teams,
            "topics_per_team": size["topics"],
            "global_invalidation_weight": args.global_invalidations,
            "requests_per_agent": requests,
            "cache_mode": args.cache_mode,
            "broken_cache": bool(args.broken_cache),
            "load_phases": phases,
            "instances": [i.instance_id for i in run.instance_infos],
            "agents_in_topology": run.topology.agent_count,
            "global_scope_patterns": cache_rows.global_scope_patterns(),
            "pattern_ttls": cache_rows.pattern_ttls(),
            "instance_propagation_ms": cache_rows.instance_propagation(run),
            "cache_counters": cache_rows.cache_counters(run),
        }

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        table = cache_rows.scope_namespaces(result.table, facts["global_scope_patterns"])
        coherency = check_coherency(
            table,
            mode=args.cache_mode,
            staleness_bound_ms=args.staleness_bound_ms,
            section=SECTION,
            content=True,
            fill_ttl_s=facts["pattern_ttls"],
            expect_global=facts["global_invalidation_weight"] > 0,
        )
        invalidations = table.filter(pc.invert(pc.equal(table.column("op"), "write")))
        after_invalidate = check_coherency(
            invalidations, mode=args.cache_mode, section=SECTION, needs=Needs(own_writes=0)
        )
        visibility = cache_rows.cross_instance_visibility(table)
        size = sizes(args.scale)
        agents = metrics.distinct(table, "agent_id")
        instances = metrics.distinct(table, "instance_id")
        strict = args.cache_mode == "strict"
        found = [
            criteria.success_rate_criterion(table, 95.0, section=SECTION),
            checks.at_least(
                "instances_with_rows",
                float(instances),
                3,
                evidence=Evidence("rows", table.num_rows, 1),
                description="distinct instances that served rows",
                section=SECTION,
            ),
            checks.at_least(
                "distinct_agents",
                float(agents),
                min(size["min_agents"], facts["agents_in_topology"]),
                evidence=Evidence("rows", table.num_rows, 1),
                description="distinct agents in the history",
                section=SECTION,
            ),
            checks.equals(
                "nothing_lost",
                float(result.sent - table.num_rows),
                0,
                evidence=Evidence("requests sent", result.sent, 1),
                description="requests sent without a history row",
                section=SECTION,
            ),
            # eventual: a later read may still precede the message, so only strict gates it.
            *cache_rows.visibility_criteria(
                visibility, section=SECTION, critical=strict, min_pairs=20
            ),
            checks.equals(
                "consistent_invalidation",
                float(after_invalidate.stale.count),
                0,
                evidence=Evidence(
                    "reads begun after an acked invalidate_cache of their namespace",
                    after_invalidate.stale.comparable,
                    5,
                ),
                description="reads begun after an acked invalidate_cache that saw an older generation",
                section=SECTION,
                critical=strict or args.staleness_bound_ms is not None,
            ),
        ]
        load = cache_rows.rows_of(table, phases=facts["load_phases"])
        extra = {
            "cache_mode": args.cache_mode,
            "broken_cache": bool(args.broken_cache),
            "stale_reads": coherency.stale.count,
            "stale_reads_by_content": coherency.content.violations if coherency.content else None,
            "stale_reads_by_instance": dict(coherency.stale.by_instance),
            "stale_after_invalidate": after_invalidate.stale.count,
            "stale_reads_by_tier": cache_rows.stale_by_tier(table, args.cache_mode),
            "propagation_ms": {k: v.stats() for k, v in sorted(coherency.propagation.items())},
            "visibility": visibility,
            "fills": cache_rows.fills_per_key_version(table),
            "rows_by_instance": cache_rows.per_instance_counts(table),
            "load_rows": load.num_rows,
            "load_by_method": cache_rows.count_by(load, "method"),
            "load_by_tier": cache_rows.count_by(load, "cache_tier"),
        }
        return Outcome(found, extra, coherency)


EXPERIMENT = CoherencyExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
