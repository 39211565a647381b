"""Which outages a fault experiment runs, from its options (no servers)."""

from __future__ import annotations

import argparse
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import pytest

from experiments.redis_failover import outside_outages
from experiments.support.outages import add_outage_arguments, plan_outages, skipped_criteria


def _run(owned: Any = None) -> Any:
    """What plan_outages reads of a ClusterRun: the given infra, or the resolved one."""
    return SimpleNamespace(config=SimpleNamespace(infra=None), infra=SimpleNamespace(owned=owned))


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_outage_arguments(parser)
    return parser.parse_args(argv)


def test_servers_given_by_url_without_a_driver_skip_every_outage() -> None:
    plan = plan_outages(_run(), _args())
    assert plan.injector is None and plan.kinds == ()
    assert set(plan.skipped) == {"stop", "pause"}
    judged = skipped_criteria(
        ("success_during_outage",), "stop", plan.skipped["stop"], section="4.2"
    )
    assert judged[0].name == "success_during_outage_stop" and judged[0].blocks


def test_commands_without_pause_run_the_stop_and_skip_the_pause() -> None:
    plan = plan_outages(_run(), _args("--fault-stop-cmd", "a", "--fault-start-cmd", "b"))
    assert plan.kinds == ("stop",)
    assert "--fault-pause-cmd" in plan.skipped["pause"]


def test_asking_only_for_an_outage_the_driver_cannot_take_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="cannot pause"):
        plan_outages(
            _run(),
            _args("--fault-mode", "pause", "--fault-stop-cmd", "a", "--fault-start-cmd", "b"),
        )


def test_rows_in_flight_when_the_fault_began_belong_to_the_outage() -> None:
    table = pa.table(
        {"t_send_ns": [0, 5, 12, 25, 31], "t_recv_ns": [4, 11, 14, 26, 32]},
    )
    outage = {"t_applied_ns": 10, "t_reconnected_ns": 30, "t_healed_ns": 20}
    kept = outside_outages(table, [outage])
    assert kept.column("t_send_ns").to_pylist() == [0, 31]
