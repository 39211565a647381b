"""Witnesses (explained counterexamples) and timeline.html, from hand-built histories."""

from __future__ import annotations

from analysis.coherency import Needs, check_coherency
from analysis.timeline import render_timeline
from analysis.witness import stale_rows, witness_markdown, witness_points, witnesses

MS = 1_000_000


def _stale_history(rows):
    r = rows()
    r.write(version=1, send=0, recv=5, agent_id="run-test-s0-a0001", instance_id="i0")
    for i in range(30):
        r.read(seen=1, send=10 + i * 20, recv=14 + i * 20, agent_id=f"run-test-s1-a{i:04d}",
               instance_id=f"i{i % 3}", cache_tier="l1", session_id=f"s{i}")  # fmt: skip
    write = r.write(version=2, send=1000, recv=1005, agent_id="run-test-s0-a0002", instance_id="i1")
    seen_i0 = r.read(seen=2, send=1050, recv=1052, agent_id="run-test-s1-a0100", instance_id="i0")
    stale = r.read(seen=1, send=1210, recv=1212, agent_id="run-test-s2-a0007", instance_id="i2",
                   cache_tier="l1")  # fmt: skip
    return r.table(), write, seen_i0, stale


FAULTS = [
    {"fault": "drop-invalidations:inst-2=1@1s+1s", "category": "invalidation",
     "applied_ns": 900 * MS, "healed_ns": 1900 * MS, "detail": "proxy", "error": None},
    {"fault": "clock:swarm-1=+150ms", "category": "clock", "applied_ns": 0,
     "healed_ns": 2000 * MS, "detail": "", "error": None},
]  # fmt: skip


def test_a_stale_read_is_explained(rows):
    history, write, seen_i0, stale = _stale_history(rows)
    report = check_coherency(history, needs=Needs(own_writes=0, session_pairs=0, fills=0,
                                                  stale_pairs=5))  # fmt: skip
    assert report.stale.count == 1
    found = witnesses(history, report, FAULTS)
    assert len(found) == 1
    w = found[0]
    assert (w.write["row"], w.write["generation"], w.write["instance"]) == (write, 2, "i1")
    assert (w.read["row"], w.read["generation"], w.read["tier"], w.read["instance"]) == (
        stale, 1, "l1", "i2",
    )  # fmt: skip
    assert round(w.read["since_ack_ms"]) == 205
    assert w.arrivals["i0"].endswith(f"(+45 ms, row {seen_i0})")
    assert w.arrivals["i2"] == "never observed"
    assert w.faults == ["drop-invalidations:inst-2=1@1s+1s", "clock:swarm-1=+150ms"]
    text = witness_markdown(found)
    assert "Witness 1" in text and "generation 2" in text and "tier l1, generation 1" in text
    assert "timeline.html#witness-1" in text
    assert stale_rows(report) == {stale}

    page = render_timeline(
        run_id="run-test", scenario="unit", history=history, faults=FAULTS,
        witnesses=witness_points(found), stale_rows=stale_rows(report),
    )  # fmt: skip
    assert 'id="witness-1"' in page and 'id="timeline"' in page
    assert "drop-invalidations:inst-2" in page and "clock:swarm-1" in page
    assert "swarm-2" in page and "<script src" not in page


def test_a_clean_history_has_no_witness(rows):
    r = rows()
    r.write(version=1, send=0, recv=5)
    r.read(seen=1, send=10, recv=12)
    report = check_coherency(r.table(), needs=Needs(own_writes=0, session_pairs=0, fills=0))
    assert witnesses(r.table(), report) == [] and witness_markdown([]) == ""
    assert witnesses(r.table(), None) == []
