"""Team namespaces and per-agent request counts in workloads; team slots in the topology."""

from __future__ import annotations

import random

import pytest

from actors.recorder import Outcome, SessionInfo, build_row
from actors.workload import Workload
from cluster.topology import ScalePreset, build_topology


def test_team_namespace_goes_to_namespaced_methods_only() -> None:
    w = Workload.from_dict(
        {"mix": {"execute_pattern": 1, "ping": 1}, "teams": 4, "queries": ["q1"]}
    )
    assert w.team_namespace("run-1", 6) == "team:run-1-2"
    rng = random.Random(0)
    seen = {w.request("a1", i, rng, "team:run-1-2").method: i for i in range(20)}
    assert set(seen) == {"execute_pattern", "ping"}
    rng = random.Random(0)
    for i in range(20):
        spec = w.request("a1", i, rng, "team:run-1-2")
        if spec.method == "execute_pattern":
            assert spec.params["namespace"] == "team:run-1-2"
            assert spec.namespace == "team:run-1-2" and spec.key == "q1"
        else:
            assert "namespace" not in spec.params and spec.namespace == "a1"


def test_no_teams_keeps_own_namespace_and_mix_params_win() -> None:
    w = Workload.from_dict({"mix": [{"method": "recall_memory", "params": {"query": "fixed"}}]})
    assert w.team_namespace("run", 3) is None
    spec = w.request("agent-7", 0, random.Random(1))
    assert spec.namespace == "agent-7" and spec.key == "fixed"


def test_requests_per_agent_range() -> None:
    w = Workload.from_dict({"requests_per_agent": [3, 7]})
    counts = {w.requests_for(random.Random(s)) for s in range(200)}
    assert counts == set(range(3, 8))
    with pytest.raises(ValueError, match="requests_per_agent_max"):
        Workload.from_dict({"requests_per_agent": [5, 2]})


def test_every_team_spans_every_instance() -> None:
    preset = ScalePreset(name="t", instances=3, swarms=3, agents_per_swarm=10)
    topo = build_topology(preset, "run")
    teams: dict[int, set[int]] = {}
    for swarm in topo.swarms:
        for home, slot in zip(swarm.home_instances, swarm.agent_slots, strict=True):
            teams.setdefault(slot % 4, set()).add(home)
    assert all(homes == {0, 1, 2} for homes in teams.values())


def test_invalidate_row_carries_the_new_generation() -> None:
    w = Workload.from_dict({"mix": {"invalidate_cache": 1}, "teams": 2})
    spec = w.request("a", 0, random.Random(0), "team:r-1")
    row = build_row(
        run_id="r",
        scenario="s",
        phase="p",
        request=spec,
        session=SessionInfo("a", "s1", "i0"),
        outcome=Outcome.ok({"namespace": "team:r-1", "generation": 42, "degraded": False}),
        t_send_ns=1,
        t_recv_ns=2,
    )
    assert row["op"] == "invalidate" and row["version_written"] == 42
    assert row["namespace"] == "team:r-1"


def test_tracked_entries_write_and_read_the_same_topics() -> None:
    from actors.workload import TRACKED_QUERY, topic_text

    w = Workload.from_dict(
        {
            "mix": [
                {"method": "store_memory", "tracked": True, "params": {"content": "ignored"}},
                {"method": "execute_pattern", "tracked": True},
                {"method": "recall_memory", "tracked": True, "params": {"limit": 3}},
            ],
            "teams": 2,
            "topics": 3,
        }
    )
    rng = random.Random(4)
    specs = [w.request("a1", i, rng, "team:run-9-1") for i in range(60)]
    topics = {s.topic for s in specs}
    assert topics == {topic_text("team:run-9-1", k) for k in range(3)}
    for s in specs:
        assert s.namespace == "team:run-9-1" and s.params["namespace"] == "team:run-9-1"
        if s.method == "store_memory":
            # The content IS the topic (a mix entry cannot change that), never shared.
            assert s.params["content"] == s.topic and s.params["shared"] is False
            assert s.op == "write" and s.key == s.topic
        elif s.method == "execute_pattern":
            assert s.params["query"] == TRACKED_QUERY.format(topic=s.topic) == s.key
        else:
            assert s.params["query"] == s.topic and s.params["limit"] == 3
    # Topics are lower case, name their namespace, and differ in subject.
    a, b = topic_text("team:Run-1", 0), topic_text("team:Run-1", 1)
    assert a == a.lower() and "team:run-1" in a and a.split()[0] != b.split()[0]


def test_tracked_entries_need_teams_and_topics() -> None:
    with pytest.raises(ValueError, match="tracked"):
        Workload.from_dict({"mix": [{"method": "store_memory", "tracked": True}], "teams": 2})
    with pytest.raises(ValueError, match="can be tracked"):
        Workload.from_dict({"mix": [{"method": "ping", "tracked": True}], "teams": 2, "topics": 1})


def test_tracked_entries_may_use_a_notes_namespace() -> None:
    w = Workload.from_dict(
        {
            "mix": [{"method": "store_memory", "tracked": True}, {"method": "execute_pattern"}],
            "teams": 2,
            "topics": 1,
            "tracked_suffix": "-notes",
            "queries": ["q"],
        }
    )
    rng = random.Random(0)
    specs = [w.request("a", i, rng, "team:r-1") for i in range(20)]
    assert {s.namespace for s in specs if s.method == "store_memory"} == {"team:r-1-notes"}
    assert {s.namespace for s in specs if s.method == "execute_pattern"} == {"team:r-1"}
    assert all("team:r-1-notes" in s.topic for s in specs if s.topic)
