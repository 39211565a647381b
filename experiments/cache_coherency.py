"""Plan 1.2 — cache coherency under concurrent updates: 20 agents execute the same pattern at once.

All agents share one team namespace (spread over the three instances) and run the same
memory-recall query simultaneously, cache on (TTL from the catalogue), while a few of them store
memories into that namespace (each store bumps its generation, invalidating the cached answer).
Judged from the rows: every agent got a coherent result (one pattern name per query), the hit
rate after warm-up is above 70 %, and no stale data was served (coherency checker, strict) — the
last judged only over enough reads that began after an acknowledged update (20 by default):
with no comparable read there is nothing to call fresh.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import sys
from typing import Any

import pyarrow as pa

from analysis import checks, criteria, metrics
from analysis.checks import Evidence
from analysis.coherency import Needs, check_coherency
from cluster.run import ClusterRun, RunResult
from experiments import cache_rows
from experiments.runner import Experiment, Outcome, main, run_load

QUERY = "what do we know about the release plan"
AGENTS = {"ci": 20, "laptop": 20, "cloud": 20}
REQUESTS = {"ci": 12, "laptop": 20, "cloud": 50}
SECTION = "1.2"
#: Reads begun after an acknowledged update that no_stale_data needs to judge anything.
MIN_COMPARABLE_READS = 20


def workload(requests: int) -> dict[str, Any]:
    """The same query from every agent; roughly one request in forty is a store (an update)."""
    return {
        "mix": [
            {"method": "execute_pattern", "weight": 39, "params": {"query": QUERY}},
            {"method": "store_memory", "weight": 1},
        ],
        "requests_per_agent": requests,
        "think_time_ms": [0, 30],
        "queries": [QUERY],
        "teams": 1,
        "request_timeout_s": 20,
    }


class CacheCoherencyExperiment(Experiment):
    scenario = "cache_coherency"
    section = SECTION
    title = "Cache coherency under concurrent updates (20 agents, same pattern, TTL cache)"

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--agents", type=int, default=None, help="agents (plan: 20)")

    def agent_count(self, args: argparse.Namespace) -> int | None:
        return args.agents or AGENTS.get(args.scale, 20)

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        requests = REQUESTS.get(args.scale, REQUESTS["laptop"])
        run.phase("warmup", {**workload(1), "mix": {"execute_pattern": 1}})
        phases = run_load(run, "load", {**workload(requests), "seed": args.seed}, args.duration)
        return {
            "agents": run.topology.agent_count,
            "load_phases": phases,
            "global_scope_patterns": cache_rows.global_scope_patterns(),
        }

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        table = cache_rows.scope_namespaces(result.table, facts["global_scope_patterns"])
        # One query in one namespace: few key-generations are computed (one per update).
        coherency = check_coherency(
            table,
            mode="strict",
            section=SECTION,
            needs=Needs(fills=3, stale_pairs=MIN_COMPARABLE_READS),
        )
        names = _pattern_names(table)
        consistent = sum(1 for v in names.values() if len(v) == 1)
        updates = float(cache_rows.rows_of(table, op="write", success=True).num_rows)
        found = [
            criteria.success_rate_criterion(table, 95.0, section=SECTION),
            checks.at_least(
                "coherent_results",
                100.0 * consistent / len(names) if names else None,
                100.0,
                evidence=Evidence("queries answered", len(names), 1),
                unit="%",
                description="queries whose every successful answer named the same pattern",
                section=SECTION,
            ),
            criteria.hit_rate_criterion(table, 70.0, section=SECTION),
            checks.equals(
                "no_stale_data",
                float(coherency.stale.count),
                0,
                evidence=Evidence(
                    "reads begun after an acked update (comparable reads)",
                    coherency.stale.comparable,
                    MIN_COMPARABLE_READS,
                ),
                description="reads begun after an acked update that saw an older generation",
                section=SECTION,
            ),
            checks.at_least(
                "concurrent_updates",
                updates,
                1,
                evidence=Evidence("acknowledged updates", updates, 1),
                description="updates (stores) acknowledged while the agents read",
                section=SECTION,
            ),
        ]
        extra = {
            "agents": facts["agents"],
            "pattern_names": {k: sorted(v) for k, v in names.items()},
            "stale_reads": coherency.stale.count,
            "stale_reads_by_tier": cache_rows.stale_by_tier(table),
            "hit_rate_after_warmup": metrics.cache_hit_rate(metrics.after_warmup(table)),
            "rows_by_instance": cache_rows.per_instance_counts(table),
        }
        return Outcome(found, extra, coherency)


def _pattern_names(table: pa.Table) -> dict[str, set[str]]:
    rows = cache_rows.rows_of(table, method="execute_pattern", success=True)
    out: dict[str, set[str]] = {}
    for key, name in zip(
        rows.column("key").to_pylist(), rows.column("pattern_name").to_pylist(), strict=True
    ):
        out.setdefault(str(key), set()).add(str(name))
    return out


EXPERIMENT = CacheCoherencyExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
