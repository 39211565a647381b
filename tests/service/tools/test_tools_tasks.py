"""Task tools through ToolRegistry.call: namespace isolation, compare-and-set, listing."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.context import CallContext, Services
from service.errors import InvalidParams, NotFound, ToolFailed

Ctx = Callable[[str], CallContext]


async def test_task_lifecycle(services: Services, make_ctx: Ctx) -> None:
    ctx = make_ctx("agent-tasks")
    created = await services.tools.call(
        "create_task", {"title": "ship v2.2", "priority": "critical"}, ctx
    )
    task = created["task"]
    assert task["version"] == 1 and created["version_written"] is None
    got = await services.tools.call("get_task", {"task_id": task["task_id"]}, ctx)
    assert got["task"] == task and got["version_seen"] is None

    updated = await services.tools.call(
        "update_task",
        {"task_id": task["task_id"], "status": "in_progress", "expected_version": 1},
        ctx,
    )
    assert updated["task"]["status"] == "in_progress" and updated["task"]["version"] == 2
    with pytest.raises(ToolFailed, match="version 2, not 1"):
        await services.tools.call(
            "update_task",
            {"task_id": task["task_id"], "status": "failed", "expected_version": 1},
            ctx,
        )
    done = await services.tools.call(
        "update_task",
        {"task_id": task["task_id"], "status": "completed", "result": {"ok": True}},
        ctx,
    )
    assert done["task"]["result"] == {"ok": True} and done["task"]["version"] == 3

    listing = await services.tools.call("list_tasks", {"status": "completed"}, ctx)
    assert [t["task_id"] for t in listing["tasks"]] == [task["task_id"]]
    assert listing["count"] == 1


async def test_another_agent_cannot_read_or_change_a_task(
    services: Services, make_ctx: Ctx
) -> None:
    owner, other = make_ctx("agent-owner"), make_ctx("agent-other")
    task = (await services.tools.call("create_task", {"title": "owner's secret"}, owner))["task"]
    with pytest.raises(NotFound):
        await services.tools.call("get_task", {"task_id": task["task_id"]}, other)
    with pytest.raises(NotFound):
        await services.tools.call(
            "update_task", {"task_id": task["task_id"], "status": "cancelled"}, other
        )
    assert (await services.tools.call("list_tasks", {}, other))["tasks"] == []
    still = await services.tools.call("get_task", {"task_id": task["task_id"]}, owner)
    assert still["task"]["status"] == "pending" and still["task"]["version"] == 1


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("create_task", {"title": ""}, "title"),
        ("create_task", {"title": "t", "priority": "urgent!"}, "priority"),
        ("update_task", {"task_id": "x"}, "params"),
        ("update_task", {"task_id": "x", "status": "done-ish"}, "status"),
        ("list_tasks", {"limit": 500}, "limit"),
    ],
)
async def test_task_bounds(
    services: Services, make_ctx: Ctx, tool: str, arguments: dict, field: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        await services.tools.call(tool, arguments, make_ctx("agent-task-bounds"))
    assert caught.value.field == field
