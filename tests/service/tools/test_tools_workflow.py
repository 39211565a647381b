"""execute_workflow: steps run in order as the caller, stopping at the first failing step."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest

from service.context import CallContext, Services
from service.errors import InvalidParams, NotFound

Ctx = Callable[[str], CallContext]


async def test_workflow_runs_every_step(services: Services, make_ctx: Ctx) -> None:
    ctx = make_ctx("agent-wf")
    out = await services.tools.call(
        "execute_workflow",
        {
            "steps": [
                {"tool": "store_memory", "arguments": {"content": "workflow memory alpha"}},
                {"tool": "create_task", "arguments": {"title": "follow up on alpha"}},
                {"tool": "recall_memory", "arguments": {"query": "workflow memory alpha"}},
            ]
        },
        ctx,
    )
    assert out["success"] is True and out["steps"] == 3
    assert [c["tool"] for c in out["completed"]] == ["store_memory", "create_task", "recall_memory"]
    assert out["completed"][2]["result"]["results"][0]["content"] == "workflow memory alpha"


async def test_workflow_stops_at_the_failing_step(services: Services, make_ctx: Ctx) -> None:
    ctx = make_ctx("agent-wf-fail")
    missing = str(uuid.uuid4())
    out = await services.tools.call(
        "execute_workflow",
        {
            "steps": [
                {"tool": "create_task", "arguments": {"title": "step zero"}},
                {"tool": "get_task", "arguments": {"task_id": missing}},
                {"tool": "create_task", "arguments": {"title": "never created"}},
            ]
        },
        ctx,
    )
    assert out["success"] is False
    assert out["failed_step"] == 1 and out["failed_tool"] == "get_task"
    assert out["error"]["code"] == NotFound.code
    assert [c["step"] for c in out["completed"]] == [0]
    titles = [t["title"] for t in (await services.tools.call("list_tasks", {}, ctx))["tasks"]]
    assert titles == ["step zero"]


async def test_invalid_step_arguments_fail_that_step(services: Services, make_ctx: Ctx) -> None:
    out = await services.tools.call(
        "execute_workflow",
        {"steps": [{"tool": "recall_memory", "arguments": {"query": "q", "limit": 0}}]},
        make_ctx("agent-wf-args"),
    )
    assert out["success"] is False and out["failed_step"] == 0
    assert out["error"]["code"] == InvalidParams.code


@pytest.mark.parametrize(
    ("steps", "field"),
    [
        ([{"tool": "execute_workflow", "arguments": {"steps": []}}], "steps.0.tool"),
        ([{"tool": "get_agent_info"}, {"tool": "no_such_tool"}], "steps.1.tool"),
        ([], "steps"),
        ([{"tool": "get_agent_info"}] * 21, "steps"),
    ],
)
async def test_malformed_workflows_are_refused_before_any_step(
    services: Services, make_ctx: Ctx, steps: list, field: str
) -> None:
    with pytest.raises(InvalidParams) as caught:
        await services.tools.call("execute_workflow", {"steps": steps}, make_ctx("agent-wf-bad"))
    assert caught.value.field == field
