"""Workload generation and the open-loop schedule (pure)."""

from __future__ import annotations

import itertools
import random

import pytest

from actors.workload import (
    MethodWeight,
    RateProfile,
    Workload,
    build_request,
    op_for_method,
    open_loop_offsets,
    split_round_robin,
)


def test_op_by_method() -> None:
    assert op_for_method("execute_pattern") == "read"
    assert op_for_method("recall_memory") == "read"
    assert op_for_method("get_task") == "read"
    assert op_for_method("list_tasks") == "read"
    assert op_for_method("store_memory") == "write"
    assert op_for_method("update_task") == "write"
    assert op_for_method("create_task") == "write"
    assert op_for_method("invalidate_cache") == "invalidate"
    assert op_for_method("ping") == "other"


def test_constant_rate_is_evenly_spaced() -> None:
    offsets = open_loop_offsets(RateProfile(start_rate=10, peak_rate=10, sustain_s=2))
    assert len(offsets) == 20
    assert offsets[0] == 0.0
    gaps = {round(b - a, 9) for a, b in itertools.pairwise(offsets)}
    assert gaps == {0.1}


def test_ramp_profile_matches_area_and_is_monotonic() -> None:
    profile = RateProfile(start_rate=20, peak_rate=100, ramp_up_s=5, sustain_s=5, ramp_down_s=5)
    offsets = open_loop_offsets(profile)
    assert abs(len(offsets) - profile.expected_count()) <= 1
    assert all(b > a for a, b in itertools.pairwise(offsets))
    assert offsets[-1] < profile.duration_s
    # The rate rises during ramp-up: gaps shrink from ~1/20 s towards ~1/100 s.
    first_gap, mid_gap = (
        offsets[1] - offsets[0],
        offsets[len(offsets) // 2 + 1] - offsets[len(offsets) // 2],
    )
    assert first_gap > 0.04 and mid_gap == pytest.approx(0.01, rel=0.01)


def test_sends_per_second_follow_the_profile() -> None:
    profile = RateProfile(start_rate=0, peak_rate=50, ramp_up_s=4, sustain_s=4, ramp_down_s=4)
    offsets = open_loop_offsets(profile)
    per_second = [sum(1 for t in offsets if s <= t < s + 1) for s in range(12)]
    assert per_second[5] == 50 and per_second[6] == 50
    assert per_second[0] < per_second[1] < per_second[2] < per_second[3]
    assert per_second[8] > per_second[9] > per_second[10] > per_second[11]


def test_schedule_is_independent_of_responses_and_capped() -> None:
    profile = RateProfile(start_rate=1000, peak_rate=1000, sustain_s=10)
    assert len(open_loop_offsets(profile, max_requests=123)) == 123


def test_scaled_profile_splits_the_rate() -> None:
    profile = RateProfile(start_rate=30, peak_rate=30, sustain_s=2)
    total = len(open_loop_offsets(profile))
    parts = [len(open_loop_offsets(profile.scaled(1 / 3))) for _ in range(3)]
    assert sum(parts) == total


def test_split_round_robin() -> None:
    assert split_round_robin([0.0, 1.0, 2.0, 3.0, 4.0], 2) == [[0.0, 2.0, 4.0], [1.0, 3.0]]
    with pytest.raises(ValueError):
        split_round_robin([1.0], 0)


def test_workload_from_dict_and_mix() -> None:
    w = Workload.from_dict(
        {
            "mix": {"execute_pattern": 3, "store_memory": 1},
            "requests_per_agent": 5,
            "think_time_ms": [10, 20],
        }
    )
    assert not w.open_loop
    assert w.think_time_s == (0.01, 0.02)
    rng = random.Random(1)
    methods = [w.request("agent-1", i, rng).method for i in range(400)]
    share = methods.count("execute_pattern") / len(methods)
    assert 0.65 < share < 0.85
    assert set(methods) == {"execute_pattern", "store_memory"}


def test_workload_is_deterministic_for_a_seed() -> None:
    w = Workload.from_dict({"mix": {"execute_pattern": 1, "recall_memory": 1}})
    a = [w.request("x", i, random.Random(7)) for i in range(5)]
    b = [w.request("x", i, random.Random(7)) for i in range(5)]
    assert a == b


def test_workload_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown workload keys"):
        Workload.from_dict({"mixx": {}})
    with pytest.raises(ValueError, match="weight"):
        Workload.from_dict({"mix": {"ping": 0}})
    with pytest.raises(ValueError):
        RateProfile(start_rate=1, peak_rate=0)


def test_open_loop_from_dict() -> None:
    w = Workload.from_dict({"rate": {"start_rate": 1, "peak_rate": 2, "sustain_s": 1}})
    assert w.open_loop and w.rate is not None and w.rate.peak_rate == 2


def test_build_request_namespace_and_params() -> None:
    req = build_request(MethodWeight("execute_pattern"), "agent-7", 0, "check db")
    assert req.namespace == "agent-7" and req.op == "read" and req.key == "check db"
    assert req.params["query"] == "check db"
    shared = build_request(
        MethodWeight("recall_memory", params={"namespace": "team", "limit": 2}), "a", 0, "q"
    )
    assert shared.namespace == "team" and shared.params["limit"] == 2


def test_staggered_start_spreads_first_sends_within_one_think_time() -> None:
    plain = Workload.from_dict({"think_time_ms": [1000, 3000]})
    assert plain.start_delay(random.Random(1)) == 0.0  # off: every agent at t=0
    staggered = Workload.from_dict({"think_time_ms": [1000, 3000], "staggered_start": True})
    delays = [staggered.start_delay(random.Random(i)) for i in range(400)]
    assert all(0.0 <= d <= 3.0 for d in delays)
    # spread over the think time, not bunched: every half-second slot below 1 s gets some
    assert all(any(lo <= d < lo + 0.5 for d in delays) for lo in (0.0, 0.5))
    assert 0.5 < sum(delays) / len(delays) < 1.5  # mean ≈ half the 2 s mean think time
