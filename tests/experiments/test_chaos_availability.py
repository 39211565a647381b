"""Availability per fault kind fed hand-built rows where it must fail (and pass): a kind below its
floor, too few rows, an undesigned error code, damage outliving the recovery grace, and the
attribution of overlapping faults and clock skews (times in ms)."""

from __future__ import annotations

from experiments.chaos_availability import (
    KIND_RULES,
    OVERLAPPING,
    RECOVERY_GRACE_S,
    UNFAULTED,
    attribute,
    criteria,
    fault_kind,
)
from tests.experiments.test_chaos_checks import _fault

GRACE_MS = RECOVERY_GRACE_S * 1000
AGENTS = {0: [f"r-s0-a{i:04d}" for i in range(50)], 1: [f"r-s1-a{i:04d}" for i in range(50)]}


def _by_name(found):
    return {c.name: c for c in found}


def _calm(r, n: int = 30, at: float = 50_000) -> None:
    """`n` successful requests far from every fault (the unfaulted floor's evidence)."""
    for i in range(n):
        r.add(op="read", send=at + i, recv=at + i + 1, agent_id=f"r-s0-a{i % 50:04d}")


def _pg_pause(rows, spared_failing: int, spared: int = 30, exposed_code: int = -32002):
    """PostgreSQL paused 1 s → 2 s: `spared` invalidations (`spared_failing` of them failing) and
    40 reads, all refused with `exposed_code`."""
    r = rows()
    for i in range(spared):
        ok = i >= spared_failing
        r.add(op="invalidate", method="invalidate_cache", send=1000 + i * 20, recv=1001 + i * 20,
              success=ok, error_code=None if ok else -32002, agent_id=f"r-s0-a{i:04d}")  # fmt: skip
    for i in range(40):
        r.add(op="read", send=1010 + i * 20, recv=1011 + i * 20, success=False,
              error_code=exposed_code, error_reason="x", agent_id=f"r-s0-a{i:04d}")  # fmt: skip
    _calm(r)
    return r.table(), [_fault("pause:postgres@1s+1s", "process", 1000, 2000)]


def test_kinds_are_named_by_what_was_faulted():
    assert fault_kind({"kind": "pause", "target": "redis"}) == "pause-redis"
    assert fault_kind({"kind": "partition", "target": "inst-1/redis"}) == "partition"
    assert set(KIND_RULES) >= {"pause-redis", "stop-postgres", "kill", "drop-invalidations"}


def test_a_kind_below_its_floor_fails_and_its_designed_refusals_do_not(rows):
    table, faults = _pg_pause(rows, spared_failing=0)
    ok = _by_name(criteria(table, faults, AGENTS))
    # every read refused: the design (not gated); every invalidation served: passes
    assert ok["availability_pause-postgres"].verdict == "pass"
    assert ok["failures_designed"].verdict == "pass"
    assert ok["availability_unfaulted"].verdict == "pass"
    table, faults = _pg_pause(rows, spared_failing=3)  # invalidations need no database
    bad = _by_name(criteria(table, faults, AGENTS))["availability_pause-postgres"]
    assert bad.verdict == "fail" and bad.measured == 90.0


def test_too_few_rows_fails(rows):
    table, faults = _pg_pause(rows, spared_failing=0, spared=5)
    found = _by_name(criteria(table, faults, AGENTS))["availability_pause-postgres"]
    assert found.measured == 100.0 and found.verdict == "fail"  # 5 rows: no evidence
    # a PostgreSQL outage spares only invalidations (a tenth of the mix): 10 of them suffice
    assert KIND_RULES["pause-postgres"].min_spared == found.evidence.need == 10
    table, faults = _pg_pause(rows, spared_failing=0, spared=14)
    assert (
        _by_name(criteria(table, faults, AGENTS))["availability_pause-postgres"].verdict == "pass"
    )
    r = rows()  # a fault that covered no request at all is judged too (and fails)
    _calm(r)
    empty = _by_name(criteria(r.table(), [_fault("kill:inst-1@1s", "process", 100, 200)], AGENTS))
    assert empty["availability_kill"].evidence.got == 0
    assert empty["availability_kill"].verdict == "fail"


def test_an_undesigned_error_under_a_fault_fails(rows):
    table, faults = _pg_pause(rows, spared_failing=0, exposed_code=-32603)
    found = _by_name(criteria(table, faults, AGENTS))["failures_designed"]
    assert found.verdict == "fail" and found.measured == 40
    assert "-32603" in found.description


def test_damage_that_outlives_the_grace_fails_unfaulted(rows):
    heal = 2000
    faults = [_fault("pause:postgres@1s+1s", "process", 1000, heal)]

    def failing_from(at: float):
        r = rows()
        _calm(r)
        for i in range(10):
            r.add(op="read", send=at + i, recv=at + i + 1, success=False, error_code=-32002,
                  agent_id=f"r-s1-a{i:04d}")  # fmt: skip
        return _by_name(criteria(r.table(), faults, AGENTS))["availability_unfaulted"]

    # failing inside the grace: the fault's (designed), not unfaulted
    assert failing_from(heal + 100).measured == 100
    # failing after the grace: the fault's damage outlived it
    late = failing_from(heal + GRACE_MS + 100)
    assert late.verdict == "fail" and late.measured == 75.0


def test_overlapping_faults_are_reported_apart_and_clock_skew_overlaps_nothing(rows):
    r = rows()
    pause = (1000, 3000)  # Redis paused; covers up to 3000 + grace
    drop = (2000, 4000)  # drop-invalidations on inst-0; covers up to 4000 + grace
    sends = {
        "pause only": 1500,
        "both": 2500,
        "pause grace + drop": 3500,
        "drop grace only": 3000 + GRACE_MS + 500,
        "clock only": 4000 + GRACE_MS + 500,
        "skewed, under the pause": 1600,
    }
    for name, at in sends.items():
        swarm = 1 if name.startswith(("clock", "skewed")) else 0
        # every overlapping request fails: blamed on neither fault
        r.add(op="read", send=at, recv=at + 1, success=name != "both",
              agent_id=f"r-s{swarm}-a0000", instance_id="run-inst-0")  # fmt: skip
    faults = [
        _fault("pause:redis@1s+2s", "process", *pause),
        _fault("drop-invalidations:inst-0=1@2s+2s", "invalidation", *drop),
        _fault("clock:swarm-1=+400ms", "clock", 0, 99_999),
    ]
    kinds = [k for k, _ in attribute(r.table(), faults, AGENTS)]
    assert kinds == [
        "pause-redis",
        OVERLAPPING,
        OVERLAPPING,
        "drop-invalidations",
        "clock",
        "pause-redis",  # a skewed swarm under a timed fault is that fault's
    ]
    assert UNFAULTED not in kinds


def test_a_request_in_flight_when_a_fault_begins_is_that_faults(rows):
    r = rows()
    # sent 20 ms before PostgreSQL froze, timed out 2 s later by the freeze
    r.add(op="read", send=980, recv=3000, success=False, error_code=-32001)
    r.add(op="read", send=500, recv=600)  # answered before the fault: nobody's
    faults = [_fault("pause:postgres@1s+5s", "process", 1000, 6000)]
    assert [k for k, _ in attribute(r.table(), faults, AGENTS)] == ["pause-postgres", UNFAULTED]
