"""`create_task`, `update_task`, `get_task`, `list_tasks`: tasks in the caller's namespace."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from service.context import CallContext
from service.errors import InvalidParams
from service.store.tasks import TaskStore
from service.tools.arguments import check_json_size
from service.tools.registry import ToolArgs, ToolRegistry, ToolSpec
from service.tools.store_access import (
    bump_version,
    check_writable,
    database,
    seen_version,
    write_outcome,
)

Status = Literal["pending", "in_progress", "completed", "failed", "cancelled"]
Priority = Literal["low", "medium", "high", "critical"]
TaskId = Field(min_length=1, max_length=64, description="Id returned by create_task.")
MAX_TITLE_CHARS = 200
MAX_DESCRIPTION_CHARS = 5_000
#: The `version` column is a PostgreSQL integer.
MAX_VERSION = 2**31 - 1


class CreateTaskArgs(ToolArgs):
    title: str = Field(
        min_length=1, max_length=MAX_TITLE_CHARS, description="Short name of the task."
    )
    description: str = Field(
        default="", max_length=MAX_DESCRIPTION_CHARS, description="What needs doing."
    )
    priority: Priority = Field(default="medium", description="low, medium, high or critical.")
    status: Status = Field(default="pending", description="Initial status.")


class UpdateTaskArgs(ToolArgs):
    task_id: str = TaskId
    title: str | None = Field(
        default=None, min_length=1, max_length=MAX_TITLE_CHARS, description="New title."
    )
    description: str | None = Field(
        default=None, max_length=MAX_DESCRIPTION_CHARS, description="New description."
    )
    status: Status | None = Field(default=None, description="New status.")
    priority: Priority | None = Field(default=None, description="New priority.")
    result: dict[str, Any] | None = Field(
        default=None,
        description="JSON result to attach (at most TMWS_MAX_TASK_RESULT_BYTES encoded).",
    )
    expected_version: int | None = Field(
        default=None,
        ge=1,
        le=MAX_VERSION,
        description="Only update if the task is still at this version.",
    )


class GetTaskArgs(ToolArgs):
    task_id: str = TaskId


class ListTasksArgs(ToolArgs):
    status: Status | None = Field(default=None, description="Only tasks with this status.")
    limit: int = Field(default=20, ge=1, le=100, description="Most tasks to return (1..100).")
    offset: int = Field(default=0, ge=0, le=10_000, description="Tasks to skip (newest first).")


async def create_task(ctx: CallContext, args: CreateTaskArgs) -> dict[str, Any]:
    """Create a task owned by the caller's namespace."""
    check_writable(ctx)
    async with write_outcome(ctx, "create_task"):
        task = await TaskStore(database(ctx)).create(
            ctx.namespace, ctx.agent_id, args.title, args.description, args.priority, args.status
        )
    return {"task": task, "version_written": await bump_version(ctx, "create_task")}


async def update_task(ctx: CallContext, args: UpdateTaskArgs) -> dict[str, Any]:
    """Change fields of one of the caller's tasks (SERIALIZABLE, retried on conflict)."""
    changes = args.model_dump(
        include={"title", "description", "status", "priority", "result"}, exclude_none=True
    )
    if not changes:
        raise InvalidParams("update_task needs at least one field to change", field="params")
    if args.result is not None:
        limit = ctx.services.settings.limits.max_task_result_bytes
        check_json_size(args.result, limit, "result")
    check_writable(ctx)
    async with write_outcome(ctx, "update_task"):
        task = await TaskStore(database(ctx)).update(
            ctx.namespace, args.task_id, changes, expected_version=args.expected_version
        )
    return {"task": task, "version_written": await bump_version(ctx, "update_task")}


async def get_task(ctx: CallContext, args: GetTaskArgs) -> dict[str, Any]:
    """One of the caller's tasks; a task of another namespace is reported as not found."""
    version = await seen_version(ctx)
    task = await TaskStore(database(ctx)).get(ctx.namespace, args.task_id)
    return {"task": task, "version_seen": version}


async def list_tasks(ctx: CallContext, args: ListTasksArgs) -> dict[str, Any]:
    """The caller's tasks, newest first."""
    version = await seen_version(ctx)
    tasks = await TaskStore(database(ctx)).list(
        ctx.namespace, status=args.status, limit=args.limit, offset=args.offset
    )
    return {"tasks": tasks, "count": len(tasks), "version_seen": version}


def register_task_tools(registry: ToolRegistry) -> None:
    """Add the four task tools."""
    for name, description, model, handler in (
        ("create_task", "Create a task in your namespace.", CreateTaskArgs, create_task),
        (
            "update_task",
            "Update a task's fields; pass expected_version for compare-and-set.",
            UpdateTaskArgs,
            update_task,
        ),
        ("get_task", "Get one of your tasks by id.", GetTaskArgs, get_task),
        (
            "list_tasks",
            "List your tasks, newest first, optionally by status.",
            ListTasksArgs,
            list_tasks,
        ),
    ):
        registry.register(ToolSpec(name, description, model, handler))
