"""A clock fault skews a swarm's wall clock: its answers to the driver's clock exchange and its
rows' times move together, so the measured offset corrects the rows."""

from __future__ import annotations

import time

from actors import agents
from actors.agents import Endpoint, Swarm, SwarmConfig, wall_ns


def _config(skew_ns: int) -> SwarmConfig:
    return SwarmConfig(
        swarm_id="s",
        run_id="r",
        scenario="unit",
        agent_ids=("r-s0-a0000",),
        home_instances=(0,),
        endpoints=(Endpoint("r-inst-0", "ws://127.0.0.1:1/ws"),),
        clock_skew_ns=skew_ns,
    )


def test_a_skewed_swarm_answers_and_stamps_on_its_skewed_clock() -> None:
    try:
        swarm = Swarm(_config(5_000_000_000))
        assert 4.9e9 < swarm.clock() - time.time_ns() < 5.1e9
        assert 4.9e9 < wall_ns() - time.time_ns() < 5.1e9
        Swarm(_config(0))
        assert abs(wall_ns() - time.time_ns()) < 1e8
    finally:
        agents._SKEW_NS[0] = 0
