"""Agents: one row per authenticated agent id, holding its last chosen Trinitas persona."""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from service.store.data_errors import maps_data_errors
from service.store.db import Database

PERSONAS = ("athena", "artemis", "hestia", "eris", "hera", "muses")


def _agent_row(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "agent_id": row["agent_id"],
        "namespace": row["namespace"],
        "persona": row["persona"],
        "metadata": json.loads(row["metadata"]),
        "created_at": row["created_at"].isoformat(),
        "last_seen": row["last_seen"].isoformat(),
    }


class AgentStore:
    """Upsert and read agent rows through a `Database`."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @maps_data_errors("persona", "agent_id", "namespace")
    async def set_persona(self, agent_id: str, namespace: str, persona: str) -> str | None:
        """Record `persona` for the agent (creating its row); returns the previous persona."""
        async with self._db.acquire() as conn:
            # The CTE reads the row as it was before this statement's upsert.
            return await conn.fetchval(
                """
                WITH before AS (SELECT persona FROM agents WHERE agent_id = $1)
                , upsert AS (
                    INSERT INTO agents (agent_id, namespace, persona) VALUES ($1, $2, $3)
                    ON CONFLICT (agent_id)
                    DO UPDATE SET persona = EXCLUDED.persona, last_seen = now()
                )
                SELECT persona FROM before
                """,
                agent_id,
                namespace,
                persona,
            )

    async def touch(self, agent_id: str, namespace: str) -> None:
        """Create the agent's row if missing and mark it seen now."""
        async with self._db.acquire() as conn:
            await conn.execute(
                """
                INSERT INTO agents (agent_id, namespace) VALUES ($1, $2)
                ON CONFLICT (agent_id) DO UPDATE SET last_seen = now()
                """,
                agent_id,
                namespace,
            )

    async def get(self, agent_id: str) -> dict[str, Any] | None:
        """The agent's row, or None if it never called a tool that records it."""
        async with self._db.acquire() as conn:
            row = await conn.fetchrow("SELECT * FROM agents WHERE agent_id = $1", agent_id)
        return _agent_row(row) if row else None
