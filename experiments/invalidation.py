"""Plan 4.1 — cache invalidation propagation across every consumer (three instances, one Redis).

The plan's flow, run by every agent of every team (team members start on all three instances):

1. `first`:      execute_pattern → the key's first answer is computed (a miss);
2. `repeat`:     execute again → a cache hit (L1 or L2);
3. `invalidate`: invalidate_cache of the team namespace (from every instance);
4. `after`:      execute again → the first answer per key is computed again (miss) and no read
                 sees a generation older than the invalidations (no stale data).

Propagation delay per instance comes from the rows (coherency checker), and is gating only
beyond ci scale.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import sys
from typing import Any

import pyarrow as pa

from analysis import checks, criteria, metrics
from analysis.checks import Evidence
from analysis.coherency import check_coherency
from cluster.run import ClusterRun, RunResult
from experiments import cache_rows
from experiments.runner import Experiment, Outcome, main

QUERIES = (
    "what do we know about the release plan",
    "what did we decide about the database schema",
)
TEAMS = {"ci": 10, "laptop": 20, "cloud": 60}
PHASES = ("first", "repeat", "invalidate", "after")
SECTION = "4.1"
#: "Invalidation propagates immediately": every instance hears of a bump within this bound.
PROPAGATION_MAX_MS = 100.0


def phase_workload(method: str, teams: int, query: str | None = None) -> dict[str, Any]:
    """One request per agent of `method` on its team namespace (one query when given)."""
    params = {"query": query} if query else {}
    return {
        "mix": [{"method": method, "params": params}],
        "requests_per_agent": 1,
        "queries": list(QUERIES),
        "teams": teams,
        "request_timeout_s": 20,
    }


class InvalidationExperiment(Experiment):
    scenario = "invalidation"
    section = SECTION
    title = "Cache invalidation propagation (miss → hit → invalidate → miss, across instances)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--cache-mode", choices=("strict", "eventual"), default="strict")
        parser.add_argument("--teams", type=int, default=None)

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_CACHE_MODE": args.cache_mode}

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        teams = args.teams or TEAMS.get(args.scale, TEAMS["laptop"])
        for query in QUERIES:
            # One key at a time, so "first" really is the key's first execution.
            run.phase("first", phase_workload("execute_pattern", teams, query))
            run.phase("repeat", phase_workload("execute_pattern", teams, query))
        run.phase("invalidate", phase_workload("invalidate_cache", teams))
        run.phase("after", phase_workload("execute_pattern", teams))
        return {
            "teams": teams,
            "global_scope_patterns": cache_rows.global_scope_patterns(),
            "instance_propagation_ms": cache_rows.instance_propagation(run),
            "cache_counters": cache_rows.cache_counters(run),
        }

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        table = cache_rows.scope_namespaces(result.table, facts["global_scope_patterns"])
        coherency = check_coherency(table, mode=args.cache_mode, section=SECTION)
        first = cache_rows.rows_of(table, phases=["first"])
        repeat = cache_rows.rows_of(table, phases=["repeat"])
        after = cache_rows.rows_of(table, phases=["after"])
        inval = cache_rows.rows_of(table, phases=["invalidate"])
        delays = [d for v in coherency.propagation.values() for d in v.delays_ms]
        instance_delays = facts["instance_propagation_ms"]
        worst = max(
            (d["max"] for d in instance_delays.values() if d.get("max") is not None), default=None
        )
        samples = sum(int(d.get("count") or 0) for d in instance_delays.values())
        repeat_lookups = cache_rows.rows_of(repeat, method="execute_pattern", success=True)
        found = [
            criteria.success_rate_criterion(table, 95.0, section=SECTION),
            _keys_missed("first_execution_miss", first, "each key's first execution computed it"),
            checks.at_least(
                "repeat_execution_hit",
                _rate(metrics.cache_hit_rate(repeat)),
                100.0,
                evidence=Evidence("repeated executions", repeat_lookups.num_rows, 1),
                unit="%",
                description="executions repeated before invalidation that hit the cache",
                section=SECTION,
            ),
            checks.at_least(
                "invalidations_acknowledged",
                _rate(metrics.success_rate(inval)),
                100.0,
                evidence=Evidence("invalidate_cache calls", inval.num_rows, 1),
                unit="%",
                description="invalidate_cache calls that succeeded with a new generation",
                section=SECTION,
            ),
            _keys_missed(
                "miss_after_invalidation", after, "each key recomputed after invalidation"
            ),
            checks.equals(
                "no_stale_after_invalidation",
                float(coherency.stale.count),
                0,
                evidence=Evidence(
                    "reads begun after an acked invalidation of their namespace",
                    coherency.stale.comparable,
                    20,
                ),
                description="reads begun after an acked invalidation that saw an older generation",
                section=SECTION,
                critical=args.cache_mode == "strict",
            ),
            checks.at_most(
                "propagation_max",
                worst,
                PROPAGATION_MAX_MS,
                evidence=Evidence("invalidation messages timed by the instances", samples, 1),
                unit="ms",
                description="slowest invalidation message, publish → arrival, on any instance",
                section=SECTION,
                critical=args.scale != "ci",
            ),
            *cache_rows.visibility_criteria(
                cache_rows.cross_instance_visibility(table), section=SECTION
            ),
        ]
        extra = {
            "cache_mode": args.cache_mode,
            "stale_reads": coherency.stale.count,
            "propagation_ms": {k: v.stats() for k, v in sorted(coherency.propagation.items())},
            "propagation_samples": len(delays),
            "instance_propagation_ms": instance_delays,
            "hit_rate_repeat": metrics.cache_hit_rate(repeat),
            "hit_rate_after": metrics.cache_hit_rate(after),
            "rows_by_instance": cache_rows.per_instance_counts(table),
        }
        return Outcome(found, extra, coherency)


def _rate(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _keys_missed(name: str, phase_rows: pa.Table, text: str) -> checks.Criterion:
    """Share of the phase's (namespace, key)s with at least one computed (missed) answer.

    Not "the first answer": the computing request also writes its learning record before it
    replies, so a waiter on another instance reading the fresh L2 entry may answer first.
    """
    rows = cache_rows.rows_of(phase_rows, method="execute_pattern", success=True)
    missed: dict[tuple[str, str], bool] = {}
    for ns, key, hit in zip(
        rows.column("namespace").to_pylist(),
        rows.column("key").to_pylist(),
        rows.column("cache_hit").to_pylist(),
        strict=True,
    ):
        missed[(ns, key)] = missed.get((ns, key), False) or not hit
    rate = 100.0 * sum(missed.values()) / len(missed) if missed else None
    return checks.at_least(
        name,
        rate,
        100.0,
        evidence=Evidence("(namespace, key)s executed in the phase", len(missed), 1),
        unit="%",
        description=text,
        section=SECTION,
    )


EXPERIMENT = InvalidationExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
