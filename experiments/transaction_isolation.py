"""[3.2] Transaction isolation during pattern execution: concurrent writes to the same rows.

One agent's sessions on all three instances hammer the same tasks while the swarms execute
patterns. The workload the service supports for this is `update_task`, which runs SERIALIZABLE
with bounded retries (service/store/db.py):

- blind updates: every writer updates every shared task; each acknowledged update bumps the
  task's version by one, so the final version must be 1 + acknowledged updates (no lost update,
  no failed update applied);
- a compare-and-set counter: read (get_task), then update_task(result.counter+1,
  expected_version); the final counter must equal the number of acknowledged increments (the
  state a serial order gives);
- dirty reads: the driver holds an uncommitted UPDATE on a task (its own connection) while
  sessions read it and queue updates behind its row lock, then rolls back: no read may see the
  uncommitted value, and the queued updates apply on top of the original row;
- read-after-write: a session's read after its own acknowledged update shows at least that version;
- concurrent store/recall: each writer's own text is its top recall hit, and the namespace's
  memory count equals the acknowledged stores.

- a real deadlock: `update_task` touches one row, so the API alone cannot deadlock; the driver
  makes one. It installs (for the probe only) a trigger that, when task A is updated, also
  touches task B; it holds B's row lock in its own transaction, sends `update_task(A)` (which
  locks A, then waits for B in the trigger), and then updates A itself. PostgreSQL detects the
  deadlock and aborts the service's transaction (the driver raises its own deadlock_timeout, so
  the service's is the one that fires); the service must retry it and succeed once the driver
  rolls back — or report a clear error, never -32603. The evidence is PostgreSQL's own deadlock
  counter and the service's retry counter; without a deadlock the criterion fails.

Conflicts otherwise show up as serialization failures, retried by the store (retry counters
from /health are facts).
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from analysis.isolation import DIRTY_TITLE, SECTION, check_isolation
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, main
from experiments.runner import Outcome as Verdict
from experiments.support.driver import DriverLog
from experiments.support.instances import (
    connection,
    fetch,
    health_all,
    pool_figures,
    scale_name,
    sized,
    wait_for,
)
from experiments.support.rows import where
from service.client import WsClient

#: writers per instance, blind updates per writer per task, CAS increments per writer, shared tasks
SIZES = {
    "ci": {"writers": 2, "updates": 4, "increments": 3, "tasks": 2, "reads": 6, "stores": 2},
    "laptop": {"writers": 3, "updates": 10, "increments": 8, "tasks": 3, "reads": 20, "stores": 4},
    "cloud": {"writers": 3, "updates": 20, "increments": 15, "tasks": 4, "reads": 40, "stores": 8},
}
SWARM_REQUESTS = {"ci": 2, "laptop": 5, "cloud": 10}
CAS_MAX_ATTEMPTS = 200
RETRY_COUNTERS = ("serializable_retries_total", "serializable_retries_exhausted_total")


def task_cols(result: Any) -> dict[str, Any]:
    """Row columns from a task result: the task id as key and its version."""
    task = (result or {}).get("task") or {}
    return {"key": task.get("task_id"), "version_seen": task.get("version")}


def written_cols(result: Any) -> dict[str, Any]:
    task = (result or {}).get("task") or {}
    return {
        "key": task.get("task_id"),
        "version_written": task.get("version"),
        "version_seen": None,
    }


class Writer:
    """One session of the shared agent, remembering the versions it wrote (read-after-write)."""

    def __init__(self, session: WsClient, log: DriverLog, index: int) -> None:
        self.session = session
        self.log = log
        self.index = index
        self.wrote: dict[str, int] = {}

    def _own_version_seen(self, task_id: str) -> Any:
        def expect(result: Any) -> str | None:
            task = (result or {}).get("task") or {}
            if task.get("title") == DIRTY_TITLE:
                return "dirty_read: saw an uncommitted title"
            floor = self.wrote.get(task_id, 0)
            if (task.get("version") or 0) < floor:
                return f"stale_read_after_write: version {task.get('version')} < own write {floor}"
            return None

        return expect

    async def read(self, task_id: str, phase: str) -> dict[str, Any] | None:
        call = await self.log.call(
            self.session, "get_task", {"task_id": task_id}, phase=phase,
            expect=self._own_version_seen(task_id), row=task_cols,
        )  # fmt: skip
        return ((call.result or {}).get("task")) if call.ok else None

    async def update(self, task_id: str, changes: dict[str, Any], phase: str) -> Any:
        call = await self.log.call(
            self.session, "update_task", {"task_id": task_id, **changes}, phase=phase,
            row=written_cols, key=task_id,
        )  # fmt: skip
        if call.ok:
            version = ((call.result or {}).get("task") or {}).get("version") or 0
            self.wrote[task_id] = max(self.wrote.get(task_id, 0), version)
        return call

    async def blind(self, tasks: list[str], updates: int) -> None:
        for u in range(updates):
            for task_id in tasks:
                await self.update(task_id, {"result": {"writer": self.index, "seq": u}}, "blind")

    async def increment(self, counter: str, times: int) -> None:
        """Compare-and-set increments: re-read and retry when another writer got there first."""
        done, attempts = 0, 0
        while done < times and attempts < CAS_MAX_ATTEMPTS:
            attempts += 1
            task = await self.read(counter, "cas")
            if task is None:
                continue
            value = int((task.get("result") or {}).get("counter", 0))
            call = await self.update(
                counter,
                {"result": {"counter": value + 1}, "expected_version": task["version"]},
                "cas",
            )
            done += int(call.ok)

    async def store_and_recall(self, n: int, tag: str) -> None:
        for k in range(n):
            text = f"isolation note {k} of writer {self.index} about {tag} zebra-{self.index}-{k}"
            stored = await self.log.call(
                self.session, "store_memory", {"content": text}, phase="memory", key=text
            )
            if not stored.ok:
                continue

            def top_is_own(result: Any, text: str = text) -> str | None:
                hits = (result or {}).get("results") or []
                top = hits[0]["content"] if hits else None
                return None if top == text else f"stale_read_after_write: top hit {top!r}"

            await self.log.call(
                self.session, "recall_memory", {"query": text, "limit": 3}, phase="memory",
                key=text, expect=top_is_own,
            )  # fmt: skip


class TransactionIsolationExperiment(Experiment):
    scenario = "transaction_isolation"
    section = SECTION
    title = "Transaction isolation during pattern execution"

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        scale = scale_name(run)
        background = {
            "mix": {"execute_pattern": 3, "store_memory": 1, "recall_memory": 1},
            "requests_per_agent": sized(SWARM_REQUESTS, scale),
            "request_timeout_s": 30,
        }
        handle = run.start_phase("patterns-during-writes", background)
        log = DriverLog(run.run_id, self.scenario)
        assert run.infra is not None
        facts = asyncio.run(self._drive(run, log, sized(SIZES, scale), run.infra.database_url))
        handle.wait()
        facts[DRIVER_BATCHES] = log.batches()
        return facts

    async def _drive(
        self, run: ClusterRun, log: DriverLog, size: dict[str, int], database_url: str
    ) -> dict[str, Any]:
        agent = f"{run.run_id}-txn"
        before = pool_figures(await health_all(run))
        urls = [info.ws_url for info in run.instance_infos]
        sessions = await asyncio.gather(
            *(WsClient.connect(url, agent) for url in urls for _ in range(size["writers"]))
        )
        writers = [Writer(s, log, i) for i, s in enumerate(sessions)]
        try:
            facts = await self._scenario(writers, log, size, database_url)
        finally:
            await asyncio.gather(*(s.close() for s in sessions))
        after = pool_figures(await health_all(run))
        facts["namespace"] = agent
        facts["retries"] = {
            k: sum((after[i].get(k) or 0) - (before.get(i, {}).get(k) or 0) for i in after)
            for k in RETRY_COUNTERS
        }
        facts["final_tasks"] = [
            {**r, "id": str(r["id"])}
            for r in await fetch(
                database_url,
                "SELECT id, title, version, result::text AS result FROM tasks WHERE namespace = $1",
                agent,
            )
        ]
        facts["memory_rows"] = (
            await fetch(
                database_url, "SELECT count(*) AS n FROM memories WHERE namespace = $1", agent
            )
        )[0]["n"]
        return facts

    async def _scenario(
        self, writers: list[Writer], log: DriverLog, size: dict[str, int], database_url: str
    ) -> dict[str, Any]:
        first = writers[0]
        created = [
            await log.call(
                first.session,
                "create_task",
                {"title": f"shared {k}"},
                phase="setup",
                row=written_cols,
            )
            for k in range(size["tasks"] + 2)
        ]
        locks = [
            await log.call(
                first.session, "create_task", {"title": f"deadlock {k}"}, phase="setup",
                row=written_cols,
            )
            for k in "AB"
        ]  # fmt: skip
        ids = [((c.result or {}).get("task") or {}).get("task_id") for c in created]
        shared, counter, dirty = ids[:-2], ids[-2], ids[-1]
        lock_a, lock_b = (((c.result or {}).get("task") or {}).get("task_id") for c in locks)
        await asyncio.gather(
            *(w.blind(shared, size["updates"]) for w in writers),
            *(w.increment(counter, size["increments"]) for w in writers),
            *(w.store_and_recall(size["stores"], "serializable") for w in writers),
            *(self._reader(w, shared, size["reads"]) for w in writers[::2]),
        )
        queued = await self._dirty_probe(writers, dirty, size["reads"], database_url)
        deadlock = await self._deadlock_probe(first, lock_a, lock_b, database_url)
        return {
            "shared_tasks": shared,
            "counter_task": counter,
            "dirty_task": dirty,
            "deadlock_tasks": [lock_a, lock_b],
            "deadlock": deadlock,
            "queued_behind_lock": queued,
            "writers": len(writers),
            **{f"size_{k}": v for k, v in size.items()},
        }

    async def _reader(self, writer: Writer, tasks: list[str], reads: int) -> None:
        for k in range(reads):
            await writer.read(tasks[k % len(tasks)], "reads")

    async def _dirty_probe(
        self, writers: list[Writer], task_id: str, reads: int, database_url: str
    ) -> int:
        """Hold an uncommitted UPDATE; read it from every session; queue updates; roll back."""
        async with connection(database_url) as conn:
            tx = conn.transaction()
            await tx.start()
            await conn.execute(
                "UPDATE tasks SET title = $2, version = version + 1000 WHERE id = $1::uuid",
                task_id,
                DIRTY_TITLE,
            )
            # Updates queue behind the driver's row lock; reads must not see its change.
            queued = [
                asyncio.create_task(w.update(task_id, {"status": "in_progress"}, "dirty-queued"))
                for w in writers[:3]
            ]
            per_writer = max(1, reads // 3)
            await asyncio.gather(
                *(w.read(task_id, "dirty-read") for w in writers for _ in range(per_writer))
            )
            # Make sure the updates really wait on the lock before it goes away.
            waiting, _ = await wait_for(
                lambda: _lock_waiters(database_url),
                lambda n: n >= len(queued),
                timeout_s=10.0,
            )
            await tx.rollback()
            await asyncio.gather(*queued)
        for w in writers:
            await w.read(task_id, "dirty-after")
        return waiting

    async def _deadlock_probe(
        self, writer: Writer, task_a: str, task_b: str, database_url: str
    ) -> dict[str, Any]:
        """Make the service's update_task(A) deadlock with the driver (see the docstring)."""
        name = "tmws_deadlock_probe_" + "".join(c for c in task_a if c.isalnum())[:12]
        async with connection(database_url, 30) as conn:
            await conn.execute(_TRIGGER_SQL.format(name=name, a=task_a, b=task_b))
            try:
                return await self._deadlock(writer, task_a, task_b, database_url)
            finally:
                await conn.execute(f"DROP TRIGGER IF EXISTS {name} ON tasks")
                await conn.execute(f"DROP FUNCTION IF EXISTS {name}()")

    async def _deadlock(
        self, writer: Writer, task_a: str, task_b: str, database_url: str
    ) -> dict[str, Any]:
        before = await _deadlocks(database_url)
        facts: dict[str, Any] = {"driver_victim": False, "deadlock_timeout_raised": True}
        async with connection(database_url, 30) as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                # The service's backend must be the one that detects the deadlock.
                await conn.execute("SET LOCAL deadlock_timeout = '20s'")
            except asyncpg.PostgresError:
                facts["deadlock_timeout_raised"] = False
                await tx.rollback()
                tx = conn.transaction()
                await tx.start()
            await conn.execute("UPDATE tasks SET updated_at = now() WHERE id = $1::uuid", task_b)
            call = asyncio.create_task(writer.update(task_a, {"status": "in_progress"}, "deadlock"))
            facts["service_waiting"], _ = await wait_for(
                lambda: _lock_waiters(database_url), lambda n: n >= 1, timeout_s=10.0
            )
            try:
                # Blocks on the service's lock of A: the cycle is closed here.
                await conn.execute(
                    "UPDATE tasks SET updated_at = now() WHERE id = $1::uuid",
                    task_a,
                    timeout=30,
                )
            except asyncpg.DeadlockDetectedError:
                facts["driver_victim"] = True
            finally:
                await tx.rollback()
            await call
        facts["deadlocks_detected"], _ = await wait_for(
            lambda: _deadlocks(database_url), lambda n: n > before, timeout_s=5.0
        )
        facts["deadlocks_detected"] -= before
        return facts

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Verdict:
        found, metrics = check_isolation(where(result.table, agent_id=facts["namespace"]), facts)
        return Verdict(found, metrics=metrics)


#: Test-only trigger (dropped after the probe): an update of task A also touches task B.
_TRIGGER_SQL = """
CREATE OR REPLACE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tasks SET updated_at = now() WHERE id = '{b}'::uuid;
    RETURN NEW;
END $$;
CREATE TRIGGER {name} AFTER UPDATE ON tasks FOR EACH ROW
    WHEN (NEW.id = '{a}'::uuid) EXECUTE FUNCTION {name}();
"""


async def _deadlocks(database_url: str) -> int:
    """PostgreSQL's deadlock counter of this database."""
    rows = await fetch(
        database_url,
        "SELECT deadlocks AS n FROM pg_stat_database WHERE datname = current_database()",
    )
    return int(rows[0]["n"])


async def _lock_waiters(database_url: str) -> int:
    """Backends of this database waiting on a lock (the updates queued behind the driver's)."""
    rows = await fetch(
        database_url,
        "SELECT count(*) AS n FROM pg_stat_activity"
        " WHERE datname = current_database() AND wait_event_type = 'Lock'",
    )
    return int(rows[0]["n"])


EXPERIMENT = TransactionIsolationExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
