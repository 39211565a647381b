"""[3.1] pgvector query performance under load: 50 concurrent vector searches, cache off.

Seeds memories (real MiniLM embeddings) as shared rows of one namespace of the run (memory
patterns recall the caller's own namespace plus shared rows, so every agent searches them), rebuilds the chosen
ANN index (`--index hnsw|ivfflat`, the instances run with the same TMWS_VECTOR_INDEX) over them,
then releases 50 memory-pattern queries at once (`execute_pattern`, use_cache=false, so each one
embeds the query and searches PostgreSQL). Index use is verified from PostgreSQL's own plans of
exactly the query recall runs, and of the plan's query shape, recorded as facts.

`vector_index_usable` asks the planner as it is — no planner setting forced — whether it picks
the ANN index at a table size where it should (`RECALL_INDEX_MIN_ROWS`). Below that size (ci
seeds 1000 real notes, which are quick to embed) the table is grown for the question with
mixtures of the seeded embeddings (normalised sums of two real MiniLM vectors, made in SQL), the
plans are taken, and the mixtures are deleted again.

    python experiments/pgvector_load.py --scale ci --index ivfflat --out /tmp/pgv
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import re
import sys
from typing import Any

from analysis import checks, criteria
from analysis.checks import Criterion, Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, Outcome, main
from experiments.support.driver import DriverAgents, DriverLog
from experiments.support.instances import connection
from experiments.support.rows import error_codes, latency_breakdown, qps, where
from experiments.support.seed import (
    SEED_AGENT,
    TOPICS,
    delete_seeded,
    seed_memories,
    synthetic_notes,
)
from service.config import DatabaseSettings
from service.embedding import encode_sync
from service.store.db import Database
from service.store.memories import MemoryStore
from service.store.vector_index import (
    INDEX_NAMES,
    ensure_vector_index,
    ivfflat_lists,
    vector_indexes,
)

SECTION = "3.1"
#: Seeded memories per scale; the plan gives no table size, so ci stays quick to embed.
MEMORIES = {"ci": 1000, "laptop": 10000, "cloud": 100000}
#: Below this many rows PostgreSQL may rightly prefer a sequential scan for recall's query: with
#: hnsw.ef_search = 100 (set by recall) its HNSW cost estimate beats a seq scan only on larger
#: tables (measured: 2000 rows -> Seq Scan + top-N sort, ~4 ms); with the default ef_search the
#: plan's shape switches to a seq scan at ~1000 rows.
RECALL_INDEX_MIN_ROWS = 10000
CONCURRENT = 50
#: Queries whose plans are explained (a sample of the load's own queries).
EXPLAINED = 10
_PHRASES = (
    "what do I know about the {}",
    "search my memories for the {}",
    "find my notes about the {}",
    "look up my notes on the {}",
    "recall everything about the {}",
)
# The plan's query, on our table with the operator the index is built for: MiniLM vectors are
# normalised, so cosine distance (<=>) orders like the plan's L2 (<->); `distance < 0.3` cannot
# name a select alias in WHERE, so it filters the ordered top-k from outside.
PLAN_SHAPE_SQL = """
SELECT * FROM (
    SELECT id, content, embedding <=> $1 AS distance
    FROM memories
    ORDER BY embedding <=> $1
    LIMIT 10
) top WHERE distance < 0.3
"""


def load_queries(n: int) -> list[str]:
    """`n` distinct memory-pattern queries over the seed topics."""
    out = [p.format(t) for t in TOPICS for p in _PHRASES]
    return (out * (n // len(out) + 1))[:n]


def index_in_plan(plan: str, index_name: str) -> bool:
    """True if the plan scans the ANN index by name (an Index Scan node, not a Seq Scan)."""
    return re.search(rf"Index Scan using {re.escape(index_name)}\b", plan) is not None


async def _prepare_index(url: str, kind: str, rebuild: bool) -> dict[str, Any]:
    """Make `kind` the ANN index (rebuilt over the seeded rows when asked); returns the facts."""
    async with connection(url, 30) as conn:
        before = await vector_indexes(conn)
        rows = int(await conn.fetchval("SELECT count(*) FROM memories"))
        lists = ivfflat_lists(rows) if kind == "ivfflat" else None
        if rebuild:
            # IVFFlat clusters the rows present at build time: build it over the seeded data.
            await ensure_vector_index(conn, kind, lists=lists)  # type: ignore[arg-type]
        await conn.execute("ANALYZE memories")
        after = await vector_indexes(conn)
    return {"before": before, "after": after, "table_rows": rows, "ivfflat_lists": lists}


async def _restore_index(url: str, before: dict[str, str]) -> None:
    """Put back the index kind that was there before the run (the DB may be shared)."""
    kinds = set(before.values())
    if len(kinds) != 1:
        return
    async with connection(url, 30) as conn:
        await ensure_vector_index(conn, kinds.pop())  # type: ignore[arg-type]


async def explain_plans(url: str, namespace: str, queries: list[str]) -> dict[str, Any]:
    """EXPLAIN ANALYZE of recall's own query and of the plan's shape for each sample query, with
    the planner's settings as the service runs them (nothing forced)."""
    vectors = encode_sync(queries)
    db = await Database.connect(DatabaseSettings(url=url, pool_min=1, pool_max=2))
    recall_plans, shape_plans = [], []
    try:
        store = MemoryStore(db)
        for vec in vectors:
            recall_plans.append(await store.explain_recall(namespace, vec, limit=3, analyze=True))
        async with db.acquire() as conn, conn.transaction(readonly=True):
            for vec in vectors:
                rows = await conn.fetch("EXPLAIN (ANALYZE) " + PLAN_SHAPE_SQL, vec)
                shape_plans.append("\n".join(r[0] for r in rows))
    finally:
        await db.close()
    return {"recall": recall_plans, "plan_shape": shape_plans}


# Mixtures of two seeded embeddings (normalised sums): realistic, distinct vectors made in SQL,
# so the table can reach the size where the planner should pick the ANN index without paying to
# embed that many texts. Pairs (i, i + g) of the seed's rows in order, g = 1, 2, ...
_GROW_SQL = """
WITH seed AS (
    SELECT embedding, row_number() OVER (ORDER BY id) AS rn, count(*) OVER () AS n
    FROM memories WHERE namespace = $1 AND NOT ('seed-mix' = ANY(tags))
)
INSERT INTO memories (namespace, agent_id, content, embedding, tags, importance, shared)
SELECT $1, $2, 'mixture ' || a.rn || '+' || b.rn, l2_normalize(a.embedding + b.embedding),
       ARRAY['seed', 'seed-mix'], 0.5, true
FROM seed a
CROSS JOIN generate_series(1, 1000) AS g
JOIN seed b ON b.rn = ((a.rn + g - 1) % a.n) + 1
WHERE g < a.n
LIMIT $3
"""


async def grow_for_planner(url: str, namespace: str, target_rows: int) -> int:
    """Add mixture rows to `namespace` until `memories` holds `target_rows`; returns the count."""
    async with connection(url, 120) as conn:
        rows = int(await conn.fetchval("SELECT count(*) FROM memories"))
        if rows < target_rows:
            await conn.execute(_GROW_SQL, namespace, SEED_AGENT, target_rows - rows)
            await conn.execute("ANALYZE memories")
        return int(await conn.fetchval("SELECT count(*) FROM memories"))


async def drop_mixtures(url: str, namespace: str) -> None:
    """Remove the mixture rows again (the load measures the seeded table only)."""
    async with connection(url, 120) as conn:
        await conn.execute(
            "DELETE FROM memories WHERE namespace = $1 AND 'seed-mix' = ANY(tags)", namespace
        )
        await conn.execute("ANALYZE memories")


def _execution_ms(plan: str) -> float | None:
    match = re.search(r"Execution Time: ([0-9.]+) ms", plan)
    return float(match.group(1)) if match else None


def summarize_plans(plans: dict[str, list[str]], index_name: str) -> dict[str, Any]:
    """Per query shape: plans scanning the index vs sequentially, DB execution time, one sample."""
    out: dict[str, Any] = {"index": index_name}
    for shape, texts in plans.items():
        used = sum(index_in_plan(p, index_name) for p in texts)
        seq = sum("Seq Scan on memories" in p for p in texts)
        times = [t for t in (_execution_ms(p) for p in texts) if t is not None]
        out[shape] = {
            "explained": len(texts),
            "index_scans": used,
            "seq_scans": seq,
            "index_scan_ratio": used / len(texts) if texts else None,
            "db_execution_ms_mean": sum(times) / len(times) if times else None,
            "db_execution_ms_max": max(times, default=None),
            "sample_plan": texts[0] if texts else "",
        }
    return out


class PgvectorLoad(Experiment):
    scenario = "pgvector_load"
    section = SECTION
    title = (
        "pgvector query performance: 50 concurrent vector searches, cache disabled, index verified"
    )

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--index", choices=("hnsw", "ivfflat"), default="hnsw", help="ANN index to verify"
        )
        parser.add_argument("--memories", type=int, default=None, help="memories to seed")
        parser.add_argument("--queries", type=int, default=CONCURRENT, help="concurrent searches")
        parser.add_argument("--keep-seed", action="store_true", help="leave the seeded rows")

    def instance_env(self, args: argparse.Namespace) -> dict[str, str]:
        return {"TMWS_VECTOR_INDEX": args.index}

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        assert run.infra is not None
        url = run.infra.database_url
        namespace = f"perf-seed-{run.run_id}"
        count = args.memories or MEMORIES.get(run.preset.name, MEMORIES["ci"])
        seed = asyncio.run(
            seed_memories(url, namespace, synthetic_notes(count, args.seed), shared=True)
        )
        index = asyncio.run(_prepare_index(url, args.index, rebuild=True))
        queries = load_queries(args.queries)
        log = DriverLog(run.run_id, self.scenario)
        caller = f"{run.run_id}-vec-000"
        try:
            plans = asyncio.run(explain_plans(url, caller, queries[:EXPLAINED]))
            wall_s = asyncio.run(self._load(run, log, queries))
            probe_rows = asyncio.run(grow_for_planner(url, namespace, RECALL_INDEX_MIN_ROWS))
            try:
                probe = asyncio.run(explain_plans(url, caller, queries[:EXPLAINED]))
            finally:
                asyncio.run(drop_mixtures(url, namespace))
        finally:
            if not args.keep_seed:
                asyncio.run(delete_seeded(url, namespace))
            asyncio.run(_restore_index(url, index["before"]))
        return {
            "index_kind": args.index,
            "namespace": namespace,
            "seed": seed.to_dict(),
            "index": index,
            "explain": summarize_plans(plans, INDEX_NAMES[args.index]),
            "probe_rows": probe_rows,
            "explain_probe": summarize_plans(probe, INDEX_NAMES[args.index]),
            "concurrent": len(queries),
            "load_wall_s": wall_s,
            DRIVER_BATCHES: log.batches(),
        }

    async def _load(self, run: ClusterRun, log: DriverLog, queries: list[str]) -> float:
        n_inst = len(run.instance_infos)
        ids = [f"{run.run_id}-vec-{i:03d}" for i in range(len(queries))]
        homes = [i % n_inst for i in range(len(ids))]
        async with DriverAgents(log, run.endpoints(), ids, homes) as agents:
            # One warm-up search per instance: the first call pays for lazy imports, not the DB.
            await agents.burst("warmup", queries[:n_inst], 30.0, use_cache=False)
            return await agents.burst("load", queries, 30.0, use_cache=False)

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Outcome:
        rows = where(result.table, phase="load")
        timing = args.scale != "ci"
        explain, probe = facts["explain"], facts["explain_probe"]
        recall_ratio = explain["recall"]["index_scan_ratio"]
        routes = set(rows.column("route").to_pylist())
        big = facts["index"]["table_rows"] >= RECALL_INDEX_MIN_ROWS
        judged: list[Criterion] = [
            criteria.success_rate_criterion(rows, 96.0, section=SECTION),
            criteria.avg_latency_criterion(rows, 200.0, section=SECTION, critical=timing),
            criteria.percentile_latency_criterion(
                rows, 95, 500.0, section=SECTION, critical=timing
            ),
            checks.at_least(
                "queries_per_second",
                qps(rows),
                10.0,
                evidence=Evidence("load requests", rows.num_rows, 20),
                description="successful searches per second (first send to last reply)",
                unit=" qps",
                section=SECTION,
                critical=timing,
                metric="qps",
                strict=True,
            ),
            checks.holds(
                "all_cache_disabled_memory_searches",
                routes == {"memory"} and rows.num_rows == facts["concurrent"],
                measured=f"{rows.num_rows} rows, routes {sorted(map(str, routes))}",
                expectation=f"{facts['concurrent']} rows, every one routed to a memory pattern",
                evidence=Evidence("load requests", rows.num_rows, 1),
                section=SECTION,
            ),
            checks.at_least(
                "vector_index_usable",
                _pct(probe["plan_shape"]["index_scan_ratio"]),
                100.0,
                evidence=Evidence(
                    "rows in memories when the planner was asked",
                    facts["probe_rows"],
                    RECALL_INDEX_MIN_ROWS,
                ),
                description=f"at a size where it should, the planner picks {explain['index']} "
                "on its own (no setting forced) for the plan's query shape (top-10 by distance)",
                unit="%",
                section=SECTION,
            ),
            checks.at_least(
                "recall_index_scan_ratio",
                _pct(probe["recall"]["index_scan_ratio"]),
                100.0,
                evidence=Evidence(
                    "rows in memories when the planner was asked",
                    facts["probe_rows"],
                    RECALL_INDEX_MIN_ROWS,
                ),
                description=f"plans of recall's own query scanning {explain['index']} at the "
                "same size (nothing forced)",
                unit="%",
                section=SECTION,
            ),
            checks.at_least(
                "vector_index_used",
                _pct(explain["plan_shape"]["index_scan_ratio"]),
                100.0,
                evidence=Evidence("queries explained", explain["plan_shape"]["explained"], 1),
                description=f"EXPLAIN ANALYZE of the plan's query shape on the seeded table "
                f"scans {explain['index']} (gating from {RECALL_INDEX_MIN_ROWS} rows; smaller "
                "tables may rightly seq-scan)",
                unit="%",
                section=SECTION,
                critical=big,
            ),
        ]
        return Outcome(
            judged,
            metrics={
                "qps": qps(rows),
                "load_latency": latency_breakdown(rows),
                "index_kind": facts["index_kind"],
                "index_scan_ratio": recall_ratio,
                "probe_rows": facts["probe_rows"],
                "probe_index_scan_ratio": probe["recall"]["index_scan_ratio"],
                "db_execution_ms_mean": explain["recall"]["db_execution_ms_mean"],
                "seeded_memories": facts["seed"]["rows"],
                "errors_by_code": error_codes(rows),
            },
        )


def _pct(ratio: float | None) -> float | None:
    return None if ratio is None else 100.0 * ratio


EXPERIMENT = PgvectorLoad()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
