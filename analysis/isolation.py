"""Transaction isolation checker (plan 3.2): judges concurrent writes to shared tasks from rows.

Input: the run's history table and the facts the experiment's driver gathered (the shared,
counter and dirty task ids, the final task rows read back from PostgreSQL, the memory count,
the deadlock probe). Everything judged here is in those two, so a run can be re-checked later.

- serializable_isolation: each task's final version is 1 + its acknowledged updates (no lost
  update, no failed update applied), and the compare-and-set counter equals the acknowledged
  increments (the state a serial order gives);
- no_dirty_reads / dirty_probe_reads / rollback_handling: nothing saw the driver's uncommitted
  update, and updates queued behind it applied on the original row;
- deadlocks_handled_gracefully: the service's own transaction lost a real deadlock and the
  request still ended well (retried, or a clear error), never -32603;
- zero_data_corruption: no rolled-back data, every result readable, memories = acknowledged stores.
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.rows import all_succeeded, reasons_containing, successes, where, where_in

SECTION = "3.2"
#: The title the driver's uncommitted (then rolled back) UPDATE writes: never to be seen.
DIRTY_TITLE = "DIRTY-UNCOMMITTED"
#: A rolled-back update adds this much to a version; a version past it is rolled-back data.
DIRTY_VERSION_STEP = 1000


def check_isolation(table: pa.Table, facts: dict[str, Any]) -> tuple[list[Criterion], dict]:
    """(criteria, metrics) of one run; `table` is already this run's writer agent's rows."""
    final = {t["id"]: t for t in facts["final_tasks"]}
    found: list[Criterion] = [
        checks.equals(
            "no_dirty_reads",
            float(reasons_containing(table, "dirty_read").num_rows),
            0,
            evidence=Evidence(
                "reads while the uncommitted update was held",
                where(table, phase="dirty-read").num_rows,
                1,
            ),
            description="reads that saw the driver's uncommitted UPDATE",
            section=SECTION,
        ),
        all_succeeded(
            "dirty_probe_reads",
            where_in(table, "phase", ["dirty-read", "dirty-after"]),
            section=SECTION,
            description="reads during and after the uncommitted update all answered, none dirty",
        ),
        checks.equals(
            "read_after_write_violations",
            float(reasons_containing(table, "stale_read_after_write").num_rows),
            0,
            evidence=Evidence(
                "reads after the session's own write",
                where_in(table, "phase", ["cas", "reads", "memory"]).num_rows,
                1,
            ),
            description="reads (task or memory) older than the session's own acknowledged write",
            section=SECTION,
        ),
        checks.equals(
            "internal_errors",
            float(where(table, error_code=-32603).num_rows),
            0,
            evidence=Evidence("requests", table.num_rows, 1),
            description="-32603 replies (conflicts and lock waits must be handled, not crash)",
            section=SECTION,
        ),
    ]
    found += serial_order(table, facts, final)
    found += corruption(table, facts, final)
    metrics = {
        "serializable_retries": facts["retries"],
        "writes_acked": successes(where(table, method="update_task")).num_rows,
    }
    return found, metrics


def serial_order(table: pa.Table, facts: dict[str, Any], final: dict[str, Any]) -> list[Criterion]:
    """Versions and the counter as a serial order leaves them; deadlocks; rolled-back waits."""
    updates = successes(where(table, method="update_task"))
    acked: dict[str, int] = {}
    for key in updates.column("key").to_pylist():
        acked[key] = acked.get(key, 0) + 1
    wrong = []
    for task_id in [*facts["shared_tasks"], facts["counter_task"], facts["dirty_task"]]:
        expected = 1 + acked.get(task_id, 0)
        if final[task_id]["version"] != expected:
            wrong.append(f"{task_id[:8]} v{final[task_id]['version']}≠{expected}")
    counter = json.loads(final[facts["counter_task"]]["result"] or "{}").get("counter", 0)
    cas_acked = acked.get(facts["counter_task"], 0)
    return [
        checks.holds(
            "serializable_isolation",
            not wrong and counter == cas_acked,
            evidence=Evidence("acknowledged updates", sum(acked.values()), 1),
            measured=f"versions {'ok' if not wrong else ', '.join(wrong)}; "
            f"counter {counter} after {cas_acked} acknowledged increments; "
            f"{sum(acked.values())} acknowledged updates",
            expectation="final version = 1 + acknowledged updates; counter = acknowledged increments",
            section=SECTION,
        ),
        deadlock_criterion(table, facts["deadlock"]),
        all_succeeded(
            "rollback_handling",
            where(table, phase="dirty-queued"),
            section=SECTION,
            description="updates queued behind a rolled-back transaction apply on the original row",
        ),
    ]


def corruption(table: pa.Table, facts: dict[str, Any], final: dict[str, Any]) -> list[Criterion]:
    """No rolled-back data left, every result readable, one memory per acknowledged store."""
    stores = successes(where(table, method="store_memory")).num_rows
    dirty = [
        t for t in final.values() if t["title"] == DIRTY_TITLE or t["version"] >= DIRTY_VERSION_STEP
    ]
    unreadable = []
    for task in final.values():
        try:
            json.loads(task["result"] or "null")
        except ValueError:
            unreadable.append(task["id"])
    return [
        checks.holds(
            "zero_data_corruption",
            not dirty and not unreadable and facts["memory_rows"] == stores,
            measured=f"{len(dirty)} tasks with rolled-back data, {len(unreadable)} unreadable "
            f"results, {facts['memory_rows']} memories stored for {stores} acknowledged stores",
            expectation="no rolled-back data, every result readable, memories = acknowledged stores",
            evidence=Evidence("tasks read back after the run", len(final), 1),
            section=SECTION,
        ),
    ]


def deadlock_criterion(table: pa.Table, probe: dict[str, Any]) -> Criterion:
    """The service's transaction was a deadlock's victim and the request still ended well: it
    succeeded (retried) or failed with a clear error, and nothing in the run answered -32603."""
    rows = where(table, phase="deadlock")
    ok_rows = successes(rows).num_rows
    codes = sorted({str(c) for c in rows.column("error_code").to_pylist() if c is not None})
    internal = where(table, error_code=-32603).num_rows
    handled = (
        rows.num_rows > 0 and internal == 0 and (ok_rows == rows.num_rows or "-32003" in codes)
    )
    victim = 0 if probe.get("driver_victim") else int(probe.get("deadlocks_detected") or 0)
    return checks.holds(
        "deadlocks_handled_gracefully",
        handled,
        measured=f"{probe.get('deadlocks_detected')} deadlock(s) detected by PostgreSQL "
        f"(driver the victim: {probe.get('driver_victim')}); the deadlocked update_task: "
        f"{ok_rows}/{rows.num_rows} succeeded{', errors ' + ', '.join(codes) if codes else ''}; "
        f"-32603 in the run: {internal}",
        expectation="the service's deadlocked transaction is retried (or reported as a clear "
        "error), never -32603",
        evidence=Evidence("deadlocks the service's own transaction lost", victim, 1),
        section=SECTION,
    )
