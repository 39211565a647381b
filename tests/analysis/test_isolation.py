"""The transaction isolation checker (plan 3.2) on hand-built histories, with negative controls."""

from __future__ import annotations

import json
from typing import Any

from analysis.isolation import DIRTY_TITLE, check_isolation, deadlock_criterion


def _deadlock_rows(rows: Any, *, ok: bool = True, internal_elsewhere: bool = False) -> Any:
    r = rows()
    r.add(op="write", method="update_task", phase="blind", key="t1", send=0, recv=1)
    if ok:
        r.add(op="write", method="update_task", phase="deadlock", key="A", send=10, recv=1200)
    else:
        r.add(op="write", method="update_task", phase="deadlock", key="A", send=10, recv=1200,
              success=False, error_code=-32603, error_reason="internal")  # fmt: skip
    if internal_elsewhere:
        r.add(op="read", method="get_task", phase="reads", send=2, recv=3, success=False,
              error_code=-32603, error_reason="internal")  # fmt: skip
    return r.table()


def test_deadlocks_handled_gracefully_needs_a_real_deadlock(rows: Any) -> None:
    """Not a repeat of internal_errors: without a deadlock the service lost, it fails."""
    table = _deadlock_rows(rows)
    none = deadlock_criterion(table, {"deadlocks_detected": 0, "driver_victim": False})
    assert none.failed and none.insufficient
    assert "0 deadlocks the service's own transaction lost" in none.message()
    driver_lost = deadlock_criterion(table, {"deadlocks_detected": 1, "driver_victim": True})
    assert driver_lost.insufficient  # the service had nothing to handle
    handled = deadlock_criterion(table, {"deadlocks_detected": 1, "driver_victim": False})
    assert handled.passed
    crashed = deadlock_criterion(_deadlock_rows(rows, ok=False), {"deadlocks_detected": 1})
    assert crashed.failed and not crashed.insufficient
    elsewhere = deadlock_criterion(
        _deadlock_rows(rows, internal_elsewhere=True), {"deadlocks_detected": 1}
    )
    assert elsewhere.failed


def _history(rows: Any, *, dirty_read: bool = False) -> Any:
    """Two acknowledged blind updates of S, one increment of C, a dirty probe on D, a store."""
    r = rows()
    t = 0.0
    for phase, key in [("blind", "S"), ("blind", "S"), ("cas", "C"), ("dirty-queued", "D")]:
        r.add(op="write", method="update_task", phase=phase, key=key, send=t, recv=t + 1)
        t += 2
    r.add(op="read", method="get_task", phase="cas", key="C", send=t, recv=t + 1)
    reason = "dirty_read: saw the uncommitted title" if dirty_read else None
    r.add(op="read", method="get_task", phase="dirty-read", key="D", send=t, recv=t + 1,
          success=not dirty_read, error_reason=reason)  # fmt: skip
    r.add(op="read", method="get_task", phase="dirty-after", key="D", send=t, recv=t + 2)
    r.add(op="write", method="store_memory", phase="memory", key="m", send=t, recv=t + 1)
    r.add(op="write", method="update_task", phase="deadlock", key="A", send=t, recv=t + 5)
    return r.table()


def _facts(*, s_version: int = 3, counter: int = 1, d_title: str = "d", memories: int = 1) -> dict:
    def task(task_id: str, version: int, result: Any = None, title: str = "t") -> dict:
        return {"id": task_id, "title": title, "version": version, "result": json.dumps(result)}

    return {
        "shared_tasks": ["S"],
        "counter_task": "C",
        "dirty_task": "D",
        "final_tasks": [
            task("S", s_version),
            task("C", 2, {"counter": counter}),
            task("D", 2, title=d_title),
        ],
        "memory_rows": memories,
        "deadlock": {"deadlocks_detected": 1, "driver_victim": False},
        "retries": {},
    }


def _verdicts(rows: Any, facts: dict, **history: Any) -> dict[str, Any]:
    found, _ = check_isolation(_history(rows, **history), facts)
    return {c.name: c for c in found}


def test_a_serial_history_passes(rows: Any) -> None:
    verdicts = _verdicts(rows, _facts())
    assert [n for n, c in verdicts.items() if not c.passed] == []


def test_a_lost_update_fails_serializable_isolation(rows: Any) -> None:
    """Negative control: two acknowledged updates, but the version moved only once."""
    verdicts = _verdicts(rows, _facts(s_version=2))
    assert verdicts["serializable_isolation"].failed
    assert "v2≠3" in verdicts["serializable_isolation"].message()


def test_a_lost_increment_fails_serializable_isolation(rows: Any) -> None:
    assert _verdicts(rows, _facts(counter=0))["serializable_isolation"].failed


def test_rolled_back_data_fails_zero_data_corruption(rows: Any) -> None:
    """Negative control: the driver's rolled-back title survived, or a memory went missing."""
    assert _verdicts(rows, _facts(d_title=DIRTY_TITLE))["zero_data_corruption"].failed
    assert _verdicts(rows, _facts(memories=0))["zero_data_corruption"].failed


def test_a_dirty_read_fails(rows: Any) -> None:
    verdicts = _verdicts(rows, _facts(), dirty_read=True)
    assert verdicts["no_dirty_reads"].failed
    assert verdicts["dirty_probe_reads"].failed
