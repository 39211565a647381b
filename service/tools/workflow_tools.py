"""`execute_workflow`: an ordered list of tool calls, stopping at the first that fails."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from service.context import CallContext
from service.errors import InvalidParams, TMWSError
from service.tools.registry import ToolArgs, ToolRegistry, ToolSpec

MAX_STEPS = 20
WORKFLOW_TOOL = "execute_workflow"


class WorkflowStep(ToolArgs):
    tool: str = Field(min_length=1, max_length=100, description="Name of the tool to call.")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Arguments for that tool.")


class ExecuteWorkflowArgs(ToolArgs):
    steps: list[WorkflowStep] = Field(
        min_length=1, max_length=MAX_STEPS, description=f"Tool calls run in order (1..{MAX_STEPS})."
    )


def _check_steps(ctx: CallContext, steps: list[WorkflowStep]) -> None:
    # Refuse up front, before any step runs: a partial run of a malformed workflow helps no one.
    for index, step in enumerate(steps):
        where = f"steps.{index}.tool"
        if step.tool == WORKFLOW_TOOL:
            raise InvalidParams("a workflow step cannot call execute_workflow itself", field=where)
        if step.tool not in ctx.services.tools:
            raise InvalidParams(f"unknown tool {step.tool!r} in workflow step {index}", field=where)


async def execute_workflow(ctx: CallContext, args: ExecuteWorkflowArgs) -> dict[str, Any]:
    """Run each step as the caller; report the first failing step and what completed before it."""
    _check_steps(ctx, args.steps)
    completed: list[dict[str, Any]] = []
    for index, step in enumerate(args.steps):
        try:
            result = await ctx.services.tools.call(step.tool, step.arguments, ctx)
        except TMWSError as exc:
            return {
                "success": False,
                "failed_step": index,
                "failed_tool": step.tool,
                "error": {"code": exc.code, "message": exc.message, "reason": exc.reason},
                "completed": completed,
            }
        completed.append({"step": index, "tool": step.tool, "result": result})
    return {"success": True, "steps": len(completed), "completed": completed}


def register_workflow_tools(registry: ToolRegistry) -> None:
    """Add `execute_workflow`."""
    registry.register(
        ToolSpec(
            WORKFLOW_TOOL,
            f"Run up to {MAX_STEPS} tool calls in order; stops at the first failure and says which step.",
            ExecuteWorkflowArgs,
            execute_workflow,
        )
    )
