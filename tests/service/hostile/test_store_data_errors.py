"""The safety net under validation: PostgreSQL data errors become -32602 naming the field.

These call the stores directly, skipping tool validation, so the values really reach PostgreSQL
(or asyncpg's encoder) and are refused there; before, each surfaced as -32603.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import numpy as np
import pytest

from service.errors import InvalidParams
from service.store.agents import AgentStore
from service.store.memories import MemoryStore
from service.store.tasks import TaskStore
from tests.service.hostile.conftest import Server

EMBEDDING = np.full(384, 0.05, dtype=np.float32)


async def refused(work: Awaitable[Any]) -> InvalidParams:
    with pytest.raises(InvalidParams) as info:
        await work
    return info.value


@pytest.mark.parametrize(
    ("call", "field", "sqlstate"),
    [
        (lambda m, ns: m.store(ns, ns, "a\x00b", EMBEDDING), "content", "22021"),
        (lambda m, ns: m.store(ns, ns, "x", EMBEDDING, tags=["ok", "t\x00"]), "tags.1", "22021"),
        (
            lambda m, ns: m.store(ns, ns, "x", EMBEDDING, metadata={"k": "v\x00"}),
            "metadata.k",
            "22P05",
        ),
        (
            lambda m, ns: m.store(ns, ns, "x", EMBEDDING, metadata={"v": float("nan")}),
            "metadata.v",
            "22P02",
        ),
        (
            lambda m, ns: m.store(ns, ns, "x", EMBEDDING, metadata={"v": float("inf")}),
            "metadata.v",
            "22P02",
        ),
        (lambda m, ns: m.store(ns, ns, "\ud800", EMBEDDING), "content", None),
        (lambda m, ns: m.recall(ns, EMBEDDING, tags=["\x00"]), "tags.0", "22021"),
    ],
    ids=[
        "nul_content",
        "nul_tag",
        "nul_json",
        "nan_json",
        "inf_json",
        "surrogate",
        "nul_recall_tag",
    ],
)
async def test_memory_store_maps_data_errors(
    stack: Server,
    call: Callable[[MemoryStore, str], Awaitable[Any]],
    field: str,
    sqlstate: str | None,
) -> None:
    assert stack.services is not None
    error = await refused(call(MemoryStore(stack.services.db), f"net-{uuid.uuid4().hex[:6]}"))
    assert (error.code, error.field) == (-32602, field)
    if sqlstate:
        assert error.data["sqlstate"] == sqlstate


async def test_task_and_agent_stores_map_data_errors(stack: Server) -> None:
    assert stack.services is not None
    db = stack.services.db
    ns = f"net-{uuid.uuid4().hex[:6]}"
    tasks = TaskStore(db)
    assert (await refused(tasks.create(ns, ns, "t\x00"))).field == "title"
    assert (await refused(tasks.create(ns, ns, "t", "d\x00"))).field == "description"
    task = await tasks.create(ns, ns, "fine")
    error = await refused(tasks.update(ns, task["task_id"], {"result": {"note": "\x00"}}))
    assert error.field == "result.note"
    error = await refused(tasks.update(ns, task["task_id"], {"title": "ok", "description": "\x00"}))
    assert error.field == "description"
    assert (await refused(AgentStore(db).set_persona(ns, ns, "p\x00"))).field == "persona"
    # The connection those errors happened on went back to the pool healthy.
    assert (await tasks.get(ns, task["task_id"]))["title"] == "fine"
