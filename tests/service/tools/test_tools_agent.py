"""switch_agent and get_agent_info: persona per session, namespace always the agent's own."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.context import CallContext, Services
from service.errors import InvalidParams

Ctx = Callable[[str], CallContext]


async def test_switch_persona_keeps_namespace(services: Services, make_ctx: Ctx) -> None:
    ctx = make_ctx("agent-persona")
    await services.tools.call("store_memory", {"content": "persona test memory"}, ctx)
    await services.tools.call("create_task", {"title": "persona test task"}, ctx)

    first = await services.tools.call("switch_agent", {"persona": "athena"}, ctx)
    assert first == {
        "agent_id": "agent-persona",
        "namespace": "agent-persona",
        "persona": "athena",
        "previous_persona": None,
    }
    second = await services.tools.call("switch_agent", {"persona": "hestia"}, ctx)
    assert second["previous_persona"] == "athena" and second["namespace"] == "agent-persona"

    info = await services.tools.call("get_agent_info", {}, ctx)
    assert info == {
        "agent_id": "agent-persona",
        "namespace": "agent-persona",
        "persona": "hestia",
        "memory_count": 1,
        "task_count": 1,
        "session_id": ctx.session_id,
        "instance_id": services.instance_id,
    }
    # Memories stay reachable after the switch: the namespace did not move.
    out = await services.tools.call("recall_memory", {"query": "persona test memory"}, ctx)
    assert out["results"][0]["content"] == "persona test memory"

    # A new session of the same agent starts without a session persona but finds the stored one.
    later = make_ctx("agent-persona")
    assert (await services.tools.call("get_agent_info", {}, later))["persona"] == "hestia"


async def test_unknown_persona_is_refused(services: Services, make_ctx: Ctx) -> None:
    with pytest.raises(InvalidParams) as caught:
        await services.tools.call("switch_agent", {"persona": "zeus"}, make_ctx("agent-zeus"))
    assert caught.value.field == "persona"


async def test_get_agent_info_for_a_new_agent(services: Services, make_ctx: Ctx) -> None:
    ctx = make_ctx("agent-fresh")
    info = await services.tools.call("get_agent_info", {}, ctx)
    assert info["persona"] is None and info["memory_count"] == 0 and info["task_count"] == 0
