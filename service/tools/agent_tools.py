"""`switch_agent` and `get_agent_info`: the session's Trinitas persona and the caller's identity.

Switching persona never changes the namespace: isolation stays keyed by the authenticated agent id.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from pydantic import Field

from service.context import CallContext
from service.store.agents import AgentStore
from service.store.memories import MemoryStore
from service.store.tasks import TaskStore
from service.tools.registry import ToolArgs, ToolRegistry, ToolSpec
from service.tools.store_access import database

Persona = Literal["athena", "artemis", "hestia", "eris", "hera", "muses"]
PERSONA_KEY = "persona"


class SwitchAgentArgs(ToolArgs):
    persona: Persona = Field(
        description="Trinitas persona for this session: athena, artemis, hestia, eris, hera or muses."
    )


class GetAgentInfoArgs(ToolArgs):
    pass


async def switch_agent(ctx: CallContext, args: SwitchAgentArgs) -> dict[str, Any]:
    """Set the session's persona (and remember it for the agent); the namespace stays the same."""
    previous = ctx.extra.get(PERSONA_KEY)
    stored = await AgentStore(database(ctx)).set_persona(ctx.agent_id, ctx.namespace, args.persona)
    ctx.extra[PERSONA_KEY] = args.persona
    return {
        "agent_id": ctx.agent_id,
        "namespace": ctx.namespace,
        "persona": args.persona,
        "previous_persona": previous or stored,
    }


async def get_agent_info(ctx: CallContext, args: GetAgentInfoArgs) -> dict[str, Any]:
    """Who the caller is, its persona, and how many memories and tasks its namespace holds."""
    db = database(ctx)
    row, memories, tasks = await asyncio.gather(
        AgentStore(db).get(ctx.agent_id),
        MemoryStore(db).count(ctx.namespace),
        TaskStore(db).count(ctx.namespace),
    )
    return {
        "agent_id": ctx.agent_id,
        "namespace": ctx.namespace,
        "persona": ctx.extra.get(PERSONA_KEY) or (row["persona"] if row else None),
        "memory_count": memories,
        "task_count": tasks,
        "session_id": ctx.session_id,
        "instance_id": ctx.instance_id,
    }


def register_agent_tools(registry: ToolRegistry) -> None:
    """Add `switch_agent` and `get_agent_info`."""
    registry.register(
        ToolSpec(
            "switch_agent",
            "Switch this session's Trinitas persona (athena, artemis, hestia, eris, hera, muses).",
            SwitchAgentArgs,
            switch_agent,
        )
    )
    registry.register(
        ToolSpec(
            "get_agent_info",
            "Your agent id, namespace, persona, memory and task counts, session and instance.",
            GetAgentInfoArgs,
            get_agent_info,
        )
    )
