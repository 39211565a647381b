"""The 2.0 → 2.2 migration drill (Ray-free): fresh database, 2.0 data, backup, migrate, verify, serve.

Runs in one process (the migration experiment ships it to a Ray worker so the MiniLM model is
not loaded into the driver): it creates a NEW database on the shared server, migrates it to schema
v2.0 only, seeds 2.0 rows (memories with real embeddings, tasks, agents), migrates to v2.2 with
the `pg_dump` backup, checks the schema changes and that every 2.0 row is intact, then serves the
migrated database with a real TMWS server (`ServiceHost`) and executes patterns on the old data.
Every step is a history row; the database is dropped at the end.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pyarrow as pa

from actors.recorder import Outcome, SessionInfo
from experiments.support.driver import DriverLog, violation
from experiments.support.instances import connection, fetch, fetchval
from service.client import WsClient

V22_INDEXES = (
    "pattern_executions_pattern_created",
    "pattern_executions_agent_created",
    "pattern_executions_namespace_created",
    "pattern_executions_instance_created",
    "pattern_executions_failures",
    "tasks_namespace_status_updated",
)
TOPICS = (
    ("the deployment process", "the deployment process uses blue green switches at 02:00"),
    ("postgres tuning", "postgres tuning: shared_buffers set to a quarter of memory"),
    ("the vendor contract", "the vendor contract renews every March with a 30 day notice"),
)
#: One checksum per 2.0 table over every column a 2.0 server wrote.
_CHECKSUMS = {
    "memories": "SELECT md5(string_agg(concat_ws('|', id, namespace, agent_id, content,"
    " embedding::text, tags::text, importance, shared, metadata::text, created_at), ',' ORDER BY id))"
    " FROM memories",
    "tasks": "SELECT md5(string_agg(concat_ws('|', id, namespace, title, status, version,"
    " result::text, created_at), ',' ORDER BY id)) FROM tasks",
    "agents": "SELECT md5(string_agg(concat_ws('|', agent_id, namespace, persona, metadata::text),"
    " ',' ORDER BY agent_id)) FROM agents",
}


@dataclass
class Drill:
    """Where to migrate and what to record under."""

    base_url: str
    redis_url: str
    database: str
    backup_dir: Path
    run_id: str
    scenario: str
    agents: int = 3

    @property
    def url(self) -> str:
        return with_database(self.base_url, self.database)

    def agent(self, k: int) -> str:
        return f"{self.run_id}-legacy-{k}"


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))


class Steps:
    """Runs drill steps, recording each as a row: ok with facts, or failed with the reason."""

    def __init__(self, log: DriverLog, agent: str) -> None:
        self.log = log
        self.agent = agent
        self.facts: dict[str, Any] = {}
        self.failed = False

    async def step(
        self, key: str, fn: Callable[[], Awaitable[str | None]], *, method: str = "migration"
    ) -> None:
        """`fn` returns None when the step is as expected, else what is wrong."""
        t_send = time.time_ns()
        try:
            wrong = await fn()
        except Exception as exc:  # a failed step is recorded, and later steps are skipped
            wrong = f"{type(exc).__name__}: {exc}"
        outcome = Outcome.ok({}) if wrong is None else violation(f"{key}: {wrong}")
        self.failed = self.failed or wrong is not None
        self.log.record(phase="migration", method=method, session=SessionInfo(self.agent),
                        outcome=outcome, t_send_ns=t_send, t_recv_ns=time.time_ns(),
                        key=key, op="other")  # fmt: skip


async def run_drill(drill: Drill) -> tuple[list[pa.RecordBatch], dict[str, Any]]:
    """The whole drill; (history batches, facts)."""
    from service.store import migrate

    log = DriverLog(drill.run_id, drill.scenario)
    steps = Steps(log, drill.agent(0))
    facts = steps.facts
    async with connection(with_database(drill.base_url, "postgres")) as admin:
        await admin.execute(f'CREATE DATABASE "{drill.database}"')
        try:
            await _migrate_steps(drill, steps, migrate)
            if not steps.failed:
                await _serve_steps(drill, steps, log)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{drill.database}" WITH (FORCE)')
    return log.batches(), facts


async def _migrate_steps(drill: Drill, steps: Steps, migrate: Any) -> None:
    facts = steps.facts

    async def to_v20() -> str | None:
        report = await migrate.migrate(drill.url, drill.backup_dir, target=1)
        facts["v2_0"] = report.as_dict()
        has_v22 = await fetchval(drill.url, "SELECT to_regclass('pattern_executions') IS NOT NULL")
        return (
            None
            if report.version_after == 1 and not has_v22
            else f"{report.message}; v2.2 table={has_v22}"
        )

    async def seed() -> str | None:
        facts["seeded"] = await seed_v20(drill)
        facts["checksums_before"] = await checksums(drill.url)
        return None

    async def to_v22() -> str | None:
        report = await migrate.migrate(drill.url, drill.backup_dir)
        facts["v2_2"] = report.as_dict()
        return None if (report.version_before, report.version_after) == (1, 2) else report.message

    async def backup_written() -> str | None:
        path = facts["v2_2"].get("backup_path")
        size = await asyncio.to_thread(_file_size, path)
        facts["backup_bytes"] = size
        return None if size > 0 else f"no backup file ({path})"

    async def schema() -> str | None:
        rows = await fetch(
            drill.url, "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
        )
        names = {r["indexname"] for r in rows}
        table = await fetchval(drill.url, "SELECT to_regclass('pattern_executions') IS NOT NULL")
        missing = sorted(set(V22_INDEXES) - names)
        facts["v2_2_indexes"] = sorted(n for n in names if n in V22_INDEXES)
        return None if table and not missing else f"table={table} missing indexes={missing}"

    async def intact() -> str | None:
        facts["checksums_after"] = after = await checksums(drill.url)
        before = facts["checksums_before"]
        changed = [t for t in before if before[t] != after[t]]
        return None if not changed else f"2.0 rows changed in {changed}"

    for key, fn in (("migrate_to_v2_0", to_v20), ("seed_v2_0_data", seed),
                    ("migrate_to_v2_2", to_v22), ("backup_written", backup_written),
                    ("schema_changes", schema), ("backward_compatibility", intact)):  # fmt: skip
        if steps.failed:
            return
        await steps.step(key, fn)


async def _serve_steps(drill: Drill, steps: Steps, log: DriverLog) -> None:
    """A real server on the migrated database; patterns and tools on the 2.0 rows."""
    from actors.service_instance import ServiceHost

    env = {
        "TMWS_DATABASE_URL": drill.url,
        "TMWS_REDIS_URL": drill.redis_url,
        "TMWS_INSTANCE_ID": f"{drill.run_id}-migrated",
        "TMWS_STATE_DIR": str(drill.backup_dir.parent / ".state"),
        "TMWS_POOL_MIN": "1",
        "TMWS_POOL_MAX": "4",
    }
    host = ServiceHost(env)
    info: dict[str, Any] = {}

    async def start() -> str | None:
        info["ws"] = (await host.start()).ws_url
        return None

    await steps.step("serve_migrated_database", start)
    if steps.failed:
        return
    try:
        await _use_old_data(drill, steps, log, info["ws"])
    finally:
        await host.stop()


async def _use_old_data(drill: Drill, steps: Steps, log: DriverLog, ws: str) -> None:
    seeded = steps.facts["seeded"]
    for k in range(drill.agents):
        agent = drill.agent(k)
        topic, text = TOPICS[k % len(TOPICS)]
        session = await WsClient.connect(ws, agent)
        try:

            def recalled(r: Any, text: str = text) -> str | None:
                out = (((r or {}).get("result") or {}).get("output") or {}).get("results") or []
                top = out[0]["content"] if out else None
                if (r or {}).get("route") != "memory":
                    return f"route {(r or {}).get('route')!r}"
                return None if top == text else f"top hit {top!r}"

            await log.call(session, "execute_pattern",
                           {"query": f"what do I know about {topic}", "use_cache": False},
                           phase="migrated", key="pattern_on_2_0_memories", expect=recalled)  # fmt: skip
            task = seeded["tasks"][agent]
            await log.call(session, "get_task", {"task_id": task}, phase="migrated",
                           key="task_2_0", expect=lambda r, t=task: None
                           if ((r or {}).get("task") or {}).get("task_id") == t else "task missing")  # fmt: skip
            await log.call(session, "get_agent_info", {}, phase="migrated", key="agent_2_0",
                           expect=lambda r: None if (r or {}).get("persona") == "athena"
                           and (r or {}).get("memory_count") == 1 else f"agent {r}")  # fmt: skip
        finally:
            await session.close()

    async def learning_rows() -> str | None:
        n = await fetchval(drill.url, "SELECT count(*) FROM pattern_executions WHERE namespace LIKE $1",
                          f"{drill.run_id}-legacy-%")  # fmt: skip
        steps.facts["pattern_executions_rows"] = n
        return None if n and n >= drill.agents else f"{n} learning rows"

    await steps.step("learning_record_on_migrated", learning_rows)


async def seed_v20(drill: Drill) -> dict[str, Any]:
    """2.0 rows as a 2.0 server wrote them: one memory (real MiniLM vector), task and agent each."""
    from service.embedding import encode_sync

    texts = [TOPICS[k % len(TOPICS)][1] for k in range(drill.agents)]
    vectors = encode_sync(texts)
    tasks: dict[str, str] = {}
    async with connection(drill.url, vectors=True) as conn:
        for k, (text, vector) in enumerate(zip(texts, vectors, strict=True)):
            agent = drill.agent(k)
            await conn.execute(
                "INSERT INTO memories (namespace, agent_id, content, embedding, tags)"
                " VALUES ($1, $1, $2, $3, $4)",
                agent, text, np.asarray(vector, dtype=np.float32), ["legacy"],
            )  # fmt: skip
            tasks[agent] = str(
                await conn.fetchval(
                    "INSERT INTO tasks (namespace, agent_id, title, status, version)"
                    " VALUES ($1, $1, $2, 'in_progress', 3) RETURNING id",
                    agent, f"legacy task of {agent}",
                )
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO agents (agent_id, namespace, persona) VALUES ($1, $1, 'athena')", agent
            )
    return {"memories": len(texts), "tasks": tasks, "agents": drill.agents}


def _file_size(path: str | None) -> int:
    return Path(path).stat().st_size if path and Path(path).exists() else 0


async def checksums(url: str) -> dict[str, str | None]:
    """One md5 per 2.0 table over every column a 2.0 server wrote."""
    return {table: await fetchval(url, sql) for table, sql in _CHECKSUMS.items()}
