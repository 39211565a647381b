"""Chaos's own criteria fed rows where they must fail (and pass): faults applied per category,
acknowledged writes visible after healing, the evidence gates outside the faults. Availability
per fault kind: tests/experiments/test_chaos_availability.py."""

from __future__ import annotations

from experiments.chaos import after_healing_criterion, fault_criteria

MS = 1_000_000


def _fault(text: str, category: str, lo: float | None, hi: float | None, error: str | None = None):
    return {
        "fault": text,
        "kind": text.split(":")[0],
        "category": category,
        "target": text.split(":")[1].split("=")[0].split("@")[0],
        "applied_ns": None if lo is None else int(lo * MS),
        "healed_ns": None if hi is None else int(hi * MS),
        "error": error,
    }


def _by_name(found):
    return {c.name: c for c in found}


def test_fault_criteria_demand_every_category_of_a_drawn_schedule():
    faults = [
        _fault("pause:redis@0s+1s", "process", 0, 1000),
        _fault("reset:inst-0/redis@0s+1s", "network", None, None, "apply: boom"),
        _fault("drop-invalidations:inst-1=1@0s+1s", "invalidation", 0, 1000),
    ]
    found = _by_name(fault_criteria(faults, generated=True))
    assert found["faults_applied_process"].verdict == "pass"
    assert found["faults_applied_network"].verdict == "fail"  # planned, never applied
    assert found["faults_applied_clock"].verdict == "fail"  # not even planned
    assert found["faults_healed"].verdict == "fail" and "boom" in found["faults_healed"].measured
    given = _by_name(fault_criteria(faults[:1], generated=False))
    assert set(given) == {"faults_applied_process", "faults_healed"}
    assert all(c.verdict == "pass" for c in given.values())


def _after(rows, shown: bool):
    r = rows()
    for t in range(25):
        r.store(topic=f"t{t}", memory_id=f"m{t}", send=t, recv=t + 1, namespace="team")
    for t in range(25):
        seen = [f"m{t}"] if shown or t else []
        r.add(op="read", method="execute_pattern", topic=f"t{t}", key=f"t{t}", namespace="team",
              memories_seen=seen, send=1000 + t, recv=1001 + t, phase="after",
              version_seen=1, cache_tier="l2")  # fmt: skip
    return r.table()


def test_acked_writes_after_healing(rows):
    assert after_healing_criterion(_after(rows, True), "strict", None).verdict == "pass"
    missing = after_healing_criterion(_after(rows, False), "strict", None)
    assert missing.verdict == "fail" and missing.measured == 1


def test_gates_are_judged_outside_the_faults(rows):
    from experiments.chaos import RECOVERY_GRACE_S, outside_faults

    r = rows()
    inside = r.add(op="read", send=1000, recv=1100)  # during the pause
    grace = r.add(op="read", send=2000 + RECOVERY_GRACE_S * 500, recv=2001 + RECOVERY_GRACE_S * 500)
    after = r.add(
        op="read", send=2000 + RECOVERY_GRACE_S * 2000, recv=2001 + RECOVERY_GRACE_S * 2000
    )
    before = r.add(op="read", send=100, recv=200)
    faults = [
        _fault("pause:redis@1s+1s", "process", 900, 2000),
        _fault("clock:swarm-0=+1s", "clock", 0, 99_999),  # run-long: excludes nothing
    ]
    table = r.table()
    kept = sorted(outside_faults(table, faults).column("t_send_ns").to_pylist())
    sends = table.column("t_send_ns").to_pylist()
    assert kept == sorted([sends[after], sends[before]])
    assert sends[inside] not in kept and sends[grace] not in kept


def test_a_given_schedule_sets_the_load_span():
    from cluster.nemesis.schedule import KILL_BUDGET_S, parse_schedule
    from experiments.chaos import RECOVERY_GRACE_S, given_span_s

    given = parse_schedule("pause:redis@4s+5s, clock:swarm-0=+1s")
    assert given_span_s(given) == 9 + RECOVERY_GRACE_S
    killed = parse_schedule("kill:inst-0@2s, pause:redis@1s+3s")
    assert given_span_s(killed) == 2 + KILL_BUDGET_S + RECOVERY_GRACE_S
