"""Fault schedules: the syntax (good and bad items) and the seeded generator."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from cluster.nemesis.schedule import (
    CATEGORIES,
    HEAL_GAP_S,
    KILL_BUDGET_S,
    ScheduleError,
    generate,
    load_schedule,
    parse_fault,
    parse_schedule,
)


def test_issue_examples_parse() -> None:
    schedule = parse_schedule(
        "redis:pause@10s+5s, partition:inst-1/redis@20s+3s, latency:inst-2/postgres=50ms±20@30s+10s"
    )
    pause, partition, latency = schedule.faults
    assert (pause.kind, pause.target, pause.start_s, pause.duration_s) == ("pause", "redis", 10, 5)
    assert (partition.kind, partition.instance_index, partition.server) == ("partition", 1, "redis")
    assert latency.param("latency_ms") == 50 and latency.param("jitter_ms") == 20
    assert latency.end_s == 40
    assert schedule.categories() == {"process", "network"}


@pytest.mark.parametrize(
    "text",
    [
        "pause:postgres@1s+2s",
        "stop:redis@500ms+1.5s",
        "kill:inst-0@3s",
        "bandwidth:inst-0/redis=64kbps@1s+2s",
        "reset:inst-2/postgres@1s+1s",
        "drop-invalidations:inst-1=0.5@2s+4s",
        "delay-invalidations:inst-1=1500ms/0.5@2s+4s",
        "clock:swarm-1=+250ms",
        "latency:inst-0/redis=100ms±0ms@0s+1s",
    ],
)
def test_canonical_text_round_trips(text: str) -> None:
    fault = parse_fault(text)
    assert parse_fault(fault.text()) == fault


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pause:redis", "missing @START"),
        ("flood:redis@1s+1s", "unknown fault kind"),
        ("pause:inst-1@1s+1s", "targets redis or postgres"),
        ("latency:redis=50ms@1s+1s", "inst-N/redis"),
        ("latency:inst-0/redis@1s+1s", "needs an argument"),
        ("partition:inst-0/redis=3@1s+1s", "takes no argument"),
        ("drop-invalidations:inst-0=1.5@1s+1s", "not in (0, 1]"),
        ("clock:swarm-0=250ms", "has a sign"),
        ("clock:swarm-0=+1s@1s+1s", "spans the run"),
        ("pause:redis@1s", "missing +DURATION"),
        ("pause:redis@x+1s", "bad start"),
        ("bandwidth:inst-0/redis=fast@1s+1s", "a rate"),
    ],
)
def test_bad_items_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(message)):
        parse_fault(text)


def test_validate_names_a_target_the_run_lacks() -> None:
    with pytest.raises(ScheduleError, match="3 instances"):
        parse_schedule("kill:inst-3@1s").validate(instances=3, swarms=3)


def test_same_seed_same_schedule_and_every_category() -> None:
    first = generate(7, 40, instances=3, swarms=3)
    assert first == generate(7, 40, instances=3, swarms=3)
    assert first.text() == generate(7, 40, instances=3, swarms=3).text()
    assert first.categories() == set(CATEGORIES)
    assert any(generate(s, 40, 3, 3) != first for s in range(8, 12))
    for seed in range(30):
        schedule = generate(seed, 90, instances=3, swarms=3, per_category=2)
        assert schedule.categories() == set(CATEGORIES)
        assert all(0 <= f.start_s and f.end_s <= 90 for f in schedule.faults)
        # one at a time: each timed fault (a kill: its budget) and the heal gap before the next
        timed = sorted(schedule.timed(), key=lambda f: f.start_s)
        assert all(
            a.start_s + max(a.duration_s, KILL_BUDGET_S if a.kind == "kill" else 0) + HEAL_GAP_S
            <= b.start_s + 0.05
            for a, b in itertools.pairwise(timed)
        ), schedule.text()
        # the text is the schedule: it parses back to the same faults
        assert parse_schedule(schedule.text()).faults == tuple(
            sorted(schedule.faults, key=lambda f: (f.start_s, f.kind, f.target))
        )


def test_yaml_files_load(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("seed: 3\nfaults:\n  - pause:redis@1s+2s\n  - clock:swarm-0=-1s\n")
    schedule = load_schedule(path)
    assert schedule.seed == 3 and schedule.clock_skews_ms() == {0: -1000.0}
    (tmp_path / "bad.yaml").write_text("faults: pause\n")
    with pytest.raises(ScheduleError, match="list of fault strings"):
        load_schedule(tmp_path / "bad.yaml")


def test_shipped_configs_parse() -> None:
    root = Path(__file__).resolve().parents[3] / "configs" / "nemesis"
    files = sorted(root.glob("*.yaml"))
    assert files
    for path in files:
        load_schedule(path).validate(instances=3, swarms=3)


def test_a_span_too_short_for_one_at_a_time_is_refused() -> None:
    with pytest.raises(ScheduleError, match="one at a time"):
        generate(7, 20, instances=3, swarms=3, per_category=3)
    # a tight span shrinks the drawn durations instead of overlapping the faults
    tight = generate(7, 30, instances=3, swarms=3, kill=False)
    assert all(f.end_s <= 30 for f in tight.faults)
