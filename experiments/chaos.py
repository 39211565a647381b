"""Chaos: the flagship coherency workload under a seeded random fault schedule (the nemesis).

Three instances, one Redis, team namespaces read and written concurrently (the 4.3 workload, run
open-loop at a fixed rate so faults cannot slow the sending). While the load runs, the nemesis
(`cluster.nemesis`) applies a schedule drawn from `--seed` (same seed, same schedule) with at
least one fault of every category: process (Redis/PostgreSQL paused or stopped, an instance
killed), network (latency, bandwidth, reset or blackhole between one instance and Redis or
PostgreSQL, through the fault proxy), the invalidation channel (a share of one instance's pub/sub
messages dropped or delayed) and clock (one swarm's clock skewed for the run). `--nemesis`
replaces the drawn schedule with a given one (the load then runs until its last fault is healed
and recovered, plus the healed tail).

Judged in strict mode by default: zero stale reads outside answers marked degraded (generations
and content), every acknowledged write visible after healing (a tracked read per agent once
every fault is healed and every instance reports Redis healthy), every request a row, every
fault applied and healed, and availability per fault KIND (`experiments/chaos_availability.py`).
`--cache-mode eventual --staleness-bound-ms N` judges eventual mode against its stated bound
(the run that catches `late-invalidation`, which strict mode's per-hit generation check makes
invisible; `no-flush-on-reconnect` is not reliably visible in this mix, see docs/experiments.md).

Availability, and why faults run one at a time. A failed request is blamed on a fault only when
that fault alone covered it (begun between its application and its heal + 5 s of recovery):
two faults at once (say a PostgreSQL pause and an invalidation drop) make a row whose failure
neither fault's design explains, and counting it for both judged the drop by the pause's design
(74 % for an invalidation drop that failed nothing). So the drawn schedule runs its timed faults
one at a time, each followed by 6 s of quiet (Jepsen's default nemesis does the same), and every
request of a drawn run is under at most one fault; a hand-written schedule may still overlap
faults, and those requests are reported as "overlapping" and not gated (the coherency criteria
judge them all the same). Per kind, the requests the design lets that fault fail ("exposed":
writes and invalidations while Redis is away in strict mode; reads and writes while PostgreSQL
is; the killed or cut-off instance's requests) are reported, and the others ("spared") must
succeed (≥ 99 %, Redis away ≥ 95 %: one read in flight at the loss may wait out the socket
timeout); every failure under one fault must carry an error code the design gives it; requests
under no fault must succeed (≥ 99 %: a fault's damage must not outlive its recovery). Each
failed coherency criterion is explained by witnesses in summary.md (the write, where its
invalidation was observed, the stale read).

    python experiments/chaos.py --scale ci --seed 7 [--nemesis SCHEDULE] [--inject-bug NAME]
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import sys
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from analysis import checks, criteria
from analysis.checks import Criterion, Evidence
from analysis.coherency import Needs, check_coherency
from analysis.content import check_content
from analysis.history_view import clock_columns
from cluster.nemesis.schedule import (
    CATEGORIES,
    KILL_BUDGET_S,
    Schedule,
    generate,
    load_schedule,
)
from cluster.run import ClusterRun, RunError, RunResult
from cluster.topology import load_preset
from experiments import cache_rows, chaos_availability
from experiments.chaos_availability import RECOVERY_GRACE_S
from experiments.coherency import TEAM_QUERIES, load_workload, warmup_workload
from experiments.runner import Experiment, Outcome, main

SECTION = "chaos"
#: Per scale: open-loop rate (req/s, all swarms), the span the faults are drawn in (s), healed
#: tail of the load (s), teams, tracked topics per team, faults per category.
SIZES: dict[str, dict[str, Any]] = {
    "ci": {"rate": 25.0, "span_s": 40.0, "tail_s": 10.0, "teams": 10, "topics": 3, "per": 1},
    "laptop": {"rate": 50.0, "span_s": 90.0, "tail_s": 15.0, "teams": 20, "topics": 4, "per": 2},
    "cloud": {"rate": 400.0, "span_s": 300.0, "tail_s": 30.0, "teams": 60, "topics": 8, "per": 4},
}
#: Bound on every instance reporting Redis healthy again after the schedule.
HEAL_BOUND_S = 90.0


def sizes(scale: str) -> dict[str, Any]:
    return SIZES.get(scale, SIZES["laptop"])


def given_span_s(schedule: Schedule) -> float:
    """The load before the healed tail for a given schedule: until its last timed fault ends
    (a kill: its budget) and the recovery grace after it has passed."""
    ends = [
        f.start_s + (KILL_BUDGET_S if f.kind == "kill" else f.duration_s) for f in schedule.timed()
    ]
    return max(ends, default=0.0) + RECOVERY_GRACE_S


def chaos_workload(size: dict[str, Any], seed: int) -> dict[str, Any]:
    """The 4.3 mix (tracked stores and reads, team and global invalidations), open loop."""
    closed = load_workload(size["teams"], 1, [0, 0], size["topics"])
    return {
        "mix": closed["mix"],
        "rate": {
            "start_rate": size["rate"],
            "peak_rate": size["rate"],
            "sustain_s": size["span_s"] + size["tail_s"],
        },
        "queries": list(TEAM_QUERIES),
        "teams": size["teams"],
        "topics": size["topics"],
        "request_timeout_s": 15,
        "seed": seed,
    }


def after_workload(size: dict[str, Any], agents: int) -> dict[str, Any]:
    """About one tracked read per agent once every fault is healed (acked writes visible)."""
    rate = max(1.0, agents / 6.0)
    return {
        "mix": [{"method": "execute_pattern", "tracked": True}],
        "rate": {"start_rate": rate, "peak_rate": rate, "sustain_s": 6.0},
        "queries": list(TEAM_QUERIES),
        "teams": size["teams"],
        "topics": size["topics"],
        "request_timeout_s": 20,
    }


def _redis_ok(body: dict[str, Any]) -> bool:
    return body.get("redis") == "ok" and body.get("status") in ("ok", "degraded")


class ChaosExperiment(Experiment):
    scenario = "chaos"
    section = SECTION
    title = "Chaos: coherency workload under a seeded schedule of every fault kind (strict)"
    starts_nemesis = True

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--cache-mode",
            choices=("strict", "eventual"),
            default="strict",
            help="TMWS_CACHE_MODE of the instances (and the checker's mode)",
        )
        parser.add_argument(
            "--staleness-bound-ms",
            type=float,
            default=None,
            help="eventual mode: stale reads begun later than this after the write fail the run",
        )

    def nemesis_schedule(self, args: argparse.Namespace) -> Schedule:
        if args.nemesis:
            return load_schedule(args.nemesis)
        preset = load_preset(args.scale)
        size = sizes(args.scale)
        return generate(
            args.seed,
            size["span_s"],
            preset.instances,
            preset.swarms,
            per_category=size["per"],
        )

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_CACHE_MODE": args.cache_mode}

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        size = sizes(args.scale)
        if args.nemesis:  # a given schedule: the load runs through it, not the drawn span
            size = {**size, "span_s": given_span_s(self.nemesis_schedule(args))}
        agents = run.topology.agent_count
        run.phase("warmup", warmup_workload(size["teams"], size["topics"], agents))
        phase = run.start_phase("load", chaos_workload(size, args.seed))
        run.config.nemesis.start(run)
        phase.wait()
        run.config.nemesis.stop()  # heals anything the load outlived (it should not)
        healed = True
        try:
            run.wait_healthy(_redis_ok, timeout_s=HEAL_BOUND_S)
        except RunError:
            healed = False
        run.phase("after", after_workload(size, agents))
        return {
            "cache_mode": args.cache_mode,
            "healthy_after_faults": healed,
            "global_scope_patterns": cache_rows.global_scope_patterns(),
            "pattern_ttls": cache_rows.pattern_ttls(),
            "swarm_agents": {i: list(s.agent_ids) for i, s in enumerate(run.topology.swarms)},
            "schedule_generated": not args.nemesis,
            "cache_counters": cache_rows.cache_counters(run),
        }

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        table = cache_rows.scope_namespaces(result.table, facts["global_scope_patterns"])
        strict = args.cache_mode == "strict"
        nemesis = facts["nemesis"]
        judge: dict[str, Any] = {
            "mode": args.cache_mode,
            "staleness_bound_ms": args.staleness_bound_ms,
            "section": SECTION,
            "content": True,
            "fill_ttl_s": facts["pattern_ttls"],
            "needs": Needs(),
        }
        coherency = check_coherency(table, **judge)
        # The checker's evidence gates are judged outside the faults (as redis_failover does):
        # during one, degraded reads and unversioned writes are the design, not a blind spot.
        outside = outside_faults(table, nemesis["faults"])
        gates = {c.name: c for c in check_coherency(outside, **judge).criteria if c.name in GATES}
        coherency.criteria = [gates.get(c.name, c) for c in coherency.criteria]
        # Availability judges the load the nemesis runs in: the warm-up is a cold-cache burst
        # before any fault (its timeouts are capacity, not faults), the after phase is judged by
        # acked_writes_visible_after_healing.
        load = table.filter(pc.fill_null(pc.equal(table.column("phase"), "load"), False))
        found = [
            *fault_criteria(nemesis["faults"], facts["schedule_generated"]),
            *chaos_availability.criteria(load, nemesis["faults"], facts["swarm_agents"]),
            after_healing_criterion(table, args.cache_mode, args.staleness_bound_ms),
            checks.holds(
                "healthy_after_faults",
                bool(facts["healthy_after_faults"]),
                measured="every instance reports Redis ok"
                if facts["healthy_after_faults"]
                else f"not within {HEAL_BOUND_S:.0f}s",
                expectation=f"every instance's /health reports Redis ok within {HEAL_BOUND_S:.0f}s",
                evidence=Evidence("health polls", 1, 1),
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
            criteria.success_rate_criterion(table, 80.0, section=SECTION, critical=False),
        ]
        extra = {
            "cache_mode": args.cache_mode,
            "schedule": nemesis["schedule"],
            "stale_reads": coherency.stale.count,
            "stale_reads_by_content": coherency.content.violations if coherency.content else None,
            "stale_reads_by_tier": cache_rows.stale_by_tier(table, args.cache_mode),
            "rows_by_instance": cache_rows.per_instance_counts(table),
            "availability_by_kind": chaos_availability.report(
                load, nemesis["faults"], facts["swarm_agents"]
            ),
            "strict": strict,
        }
        return Outcome(found, extra, coherency)


# -- judging -------------------------------------------------------------------------------------

#: The coherency checker's evidence gates, judged on the rows outside every fault.
GATES = (
    "checkable_reads",
    "versioned_writes",
    "content_checkable_reads",
    "global_generation_known",
)


def outside_faults(table: pa.Table, faults: list[dict[str, Any]]) -> pa.Table:
    """Rows wholly outside every timed fault (applied → healed + `RECOVERY_GRACE_S`); run-long
    clock skews excluded (they change no answer)."""
    begin, end, _ = clock_columns(table)
    keep = [True] * table.num_rows
    for f in faults:
        if f["category"] == "clock" or f["applied_ns"] is None:
            continue
        start = int(f["applied_ns"])
        stop = int(f["healed_ns"] or f["applied_ns"]) + int(RECOVERY_GRACE_S * 1e9)
        for i in ((end >= start) & (begin <= stop)).nonzero()[0].tolist():
            keep[i] = False
    return table.filter(pa.array(keep, pa.bool_()))


def fault_criteria(faults: list[dict[str, Any]], generated: bool) -> list[Criterion]:
    """Per category: at least one fault applied and healed; and no fault left unhealed."""
    wanted = CATEGORIES if generated else sorted({f["category"] for f in faults})
    out = []
    for category in wanted:
        done = [
            f
            for f in faults
            if f["category"] == category
            and f["applied_ns"] is not None
            and f["healed_ns"] is not None
            and not f["error"]
        ]
        planned = sum(1 for f in faults if f["category"] == category)
        out.append(
            checks.at_least(
                f"faults_applied_{category}",
                float(len(done)),
                1,
                evidence=Evidence(f"{category} faults in the schedule", planned, 1),
                description=f"{category} faults applied and healed (faults.parquet)",
                section=SECTION,
            )
        )
    broken = [f"{f['fault']}: {f['error']}" for f in faults if f["error"]]
    out.append(
        checks.holds(
            "faults_healed",
            not broken,
            measured="; ".join(broken) or f"{len(faults)} faults, no error",
            expectation="every fault applied and healed without error",
            evidence=Evidence("faults", len(faults), 1),
            section=SECTION,
        )
    )
    return out


def after_healing_criterion(
    table: pa.Table, mode: str, staleness_bound_ms: float | None
) -> Criterion:
    """Every acknowledged write is in every tracked read of its topic once all is healed: the
    content check over every write and the `after` phase's reads."""
    after = pc.equal(table.column("phase"), "after")
    writes = pc.equal(table.column("op"), "write")
    subset = table.filter(pc.or_(pc.fill_null(after, False), pc.fill_null(writes, False)))
    report = check_content(subset, mode="strict", min_pairs=20, min_reads=20, section=SECTION)
    return checks.equals(
        "acked_writes_visible_after_healing",
        float(report.violations),
        0,
        evidence=Evidence("acked write → read-after-healing pairs", report.pairs, 20),
        description="tracked reads after healing that lack an acknowledged write of their topic",
        section=SECTION,
    )


EXPERIMENT = ChaosExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
