"""Tasks per namespace with a version counter; updates run SERIALIZABLE with bounded retries.

A task id from another namespace behaves exactly like a missing one (`NotFound`), so ids never
reveal what other agents hold.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg

from service.errors import NotFound, ToolFailed
from service.store.data_errors import maps_data_errors
from service.store.db import Database

TASK_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
TASK_PRIORITIES = ("low", "medium", "high", "critical")
#: Columns `update` may change; everything else is owned by the store.
UPDATABLE = frozenset({"title", "description", "status", "priority", "result"})

_COLUMNS = "id, namespace, agent_id, title, description, status, priority, result, version, created_at, updated_at"


def _task_row(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "task_id": str(row["id"]),
        "namespace": row["namespace"],
        "agent_id": row["agent_id"],
        "title": row["title"],
        "description": row["description"],
        "status": row["status"],
        "priority": row["priority"],
        "result": json.loads(row["result"]) if row["result"] is not None else None,
        "version": row["version"],
        "created_at": row["created_at"].isoformat(),
        "updated_at": row["updated_at"].isoformat(),
    }


def _parse_id(task_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(task_id))
    except ValueError:
        raise NotFound(f"no task {task_id!r}", {"task_id": str(task_id)}) from None


def _not_found(task_id: str) -> NotFound:
    return NotFound(f"no task {task_id!r}", {"task_id": str(task_id)})


class TaskStore:
    """Create, read, list and update tasks through a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @maps_data_errors("title", "description", "namespace", "agent_id")
    async def create(
        self,
        namespace: str,
        agent_id: str,
        title: str,
        description: str = "",
        priority: str = "medium",
        status: str = "pending",
    ) -> dict[str, Any]:
        """Insert a task at version 1."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                f"""
                INSERT INTO tasks (namespace, agent_id, title, description, priority, status)
                VALUES ($1, $2, $3, $4, $5, $6) RETURNING {_COLUMNS}
                """,
                namespace,
                agent_id,
                title,
                description,
                priority,
                status,
            )
        return _task_row(row)

    async def get(self, namespace: str, task_id: str) -> dict[str, Any]:
        """The task, or `NotFound` if it does not exist in `namespace`."""
        key = _parse_id(task_id)
        async with self._db.acquire() as conn:
            row = await conn.fetchrow(
                f"SELECT {_COLUMNS} FROM tasks WHERE id = $1 AND namespace = $2", key, namespace
            )
        if row is None:
            raise _not_found(task_id)
        return _task_row(row)

    async def list(
        self, namespace: str, *, status: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[dict[str, Any]]:
        """Newest first, optionally only one status."""
        async with self._db.acquire() as conn:
            rows = await conn.fetch(
                f"""
                SELECT {_COLUMNS} FROM tasks
                WHERE namespace = $1 AND ($2::text IS NULL OR status = $2)
                ORDER BY created_at DESC, id
                LIMIT $3 OFFSET $4
                """,
                namespace,
                status,
                limit,
                offset,
            )
        return [_task_row(r) for r in rows]

    async def count(self, namespace: str) -> int:
        """Tasks owned by `namespace`."""
        async with self._db.acquire() as conn:
            return await conn.fetchval("SELECT count(*) FROM tasks WHERE namespace = $1", namespace)

    @maps_data_errors("changes", "expected_version", unwrap=("changes",))
    async def update(
        self,
        namespace: str,
        task_id: str,
        changes: dict[str, Any],
        *,
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Apply `changes` and bump the version; `expected_version` makes it compare-and-set."""
        unknown = set(changes) - UPDATABLE
        if unknown:
            raise ValueError(f"columns not updatable: {', '.join(sorted(unknown))}")
        key = _parse_id(task_id)

        async def apply(conn: asyncpg.Connection) -> asyncpg.Record:
            current = await conn.fetchval(
                "SELECT version FROM tasks WHERE id = $1 AND namespace = $2", key, namespace
            )
            if current is None:
                raise _not_found(task_id)
            if expected_version is not None and current != expected_version:
                raise ToolFailed(
                    f"task {task_id} is at version {current}, not {expected_version}",
                    {"task_id": str(task_id), "current_version": current},
                )
            return await self._write(conn, key, namespace, changes)

        return _task_row(await self._db.serializable(apply))

    @staticmethod
    async def _write(
        conn: asyncpg.Connection, key: uuid.UUID, namespace: str, changes: dict[str, Any]
    ) -> asyncpg.Record:
        assignments, values = [], [key, namespace]
        for column in sorted(changes):
            values.append(json.dumps(changes[column]) if column == "result" else changes[column])
            cast = "::jsonb" if column == "result" else ""
            assignments.append(f"{column} = ${len(values)}{cast}")
        sets = ", ".join([*assignments, "version = version + 1", "updated_at = now()"])
        return await conn.fetchrow(
            f"UPDATE tasks SET {sets} WHERE id = $1 AND namespace = $2 RETURNING {_COLUMNS}",
            *values,
        )
