"""The capacity model: linear costs, one event loop per instance and per swarm, fan-out per
instance, connections = instances × pool max; a check's prediction from request counts."""

from __future__ import annotations

import pytest

from cluster.capacity_model import (
    Inputs,
    Load,
    RequestCost,
    mix_cost,
    node_vcpus,
    plan,
    predict_cpu_seconds,
    relative_error,
    torch_threads,
)

INPUTS = Inputs(
    costs={
        "cheap": RequestCost(loop_ms=1.0, postgres_ms=0.5, redis_ms=0.05),
        "encode": RequestCost(loop_ms=2.0, offload_ms=8.0, postgres_ms=1.0),
        "store_memory": RequestCost(loop_ms=2.0, offload_ms=10.0, postgres_ms=2.0, redis_ms=0.1),
    },
    invalidation_ms=0.1,
    redis_publish_ms_per_subscriber=0.02,
    swarm_ms=0.5,
    swarm_rss_mb_per_agent=0.05,
    swarm_base_rss_mb=150.0,
    instance_rss_mb=700.0,
    instance_idle_cores=0.01,
    pool_max=30,
    encode_efficiency_2=0.8,
)


def test_mix_cost_is_the_weighted_average() -> None:
    load = Load(100, 1, 10, {"cheap": 3, "encode": 1})
    cost = mix_cost(INPUTS, load)
    assert cost.loop_ms == pytest.approx(0.75 * 1 + 0.25 * 2)
    assert cost.offload_ms == pytest.approx(2.0)


def test_an_unmeasured_class_is_an_error() -> None:
    with pytest.raises(ValueError, match="no measured cost for request classes"):
        mix_cost(INPUTS, Load(100, 1, 10, {"cheap": 1, "teleport": 1}))


def test_fan_out_does_not_shrink_with_more_instances() -> None:
    mix = {"cheap": 9, "store_memory": 1}
    three = plan(INPUTS, Load(1000, 3, 1000, mix)).demand
    six = plan(INPUTS, Load(1000, 6, 1000, mix)).demand
    assert three.fanout_cores == six.fanout_cores == pytest.approx(100 * 0.1 / 1000)
    assert six.loop_cores == pytest.approx(three.loop_cores / 2)


def test_connections_are_instances_times_pool_max() -> None:
    assert plan(INPUTS, Load(10, 3, 10, {"cheap": 1})).postgres_connections == 90


def test_a_busy_event_loop_asks_for_more_instances_not_bigger_nodes() -> None:
    result = plan(INPUTS, Load(3000, 3, 1000, {"cheap": 1}))
    assert result.demand.loop_busy == pytest.approx(1.0 + 0.01 * 0)
    assert any("more instances" in w for w in result.warnings)
    assert not plan(INPUTS, Load(900, 3, 1000, {"cheap": 1})).warnings


def test_encoding_beyond_one_thread_needs_torch_threads() -> None:
    assert torch_threads(0.5, INPUTS) == (1, 0.5)
    threads, cores = torch_threads(1.0, INPUTS)
    assert threads == 2 and cores == pytest.approx(1.0 / 0.8)
    threads, _ = torch_threads(3.0, INPUTS)
    assert threads == 8  # 4 x 0.8 x 0.7 = 2.24 < 3


def test_swarms_and_nodes() -> None:
    result = plan(INPUTS, Load(1000, 3, 1000, {"cheap": 1}))
    assert result.swarm_cores == pytest.approx(0.5)
    assert result.swarms == 1 and result.swarm_nodes == 1
    assert result.swarm_rss_gib == pytest.approx((150 + 50) / 1024)
    assert node_vcpus(2.0) == 4 and node_vcpus(0.1) == 2
    with pytest.raises(ValueError, match="do not fit one node"):
        node_vcpus(100.0)


def test_prediction_sums_costs_fan_out_and_background() -> None:
    predicted = predict_cpu_seconds(
        INPUTS,
        {"cheap": 1000, "store_memory": 100},
        writes=100,
        instances=3,
        agents=10,
        duration_s=10,
    )
    assert predicted.instances == pytest.approx((1000 * 1 + 100 * 12 + 100 * 3 * 0.1) / 1000 + 0.3)
    assert predicted.swarms == pytest.approx(1100 * 0.5 / 1000)
    assert predicted.postgres == pytest.approx((500 + 200) / 1000)
    assert relative_error(1.2, 1.0) == pytest.approx(0.2)
    assert relative_error(1.0, 0.0) is None


def test_ceilings_are_the_single_process_limits() -> None:
    from cluster.capacity_model import ceilings, instances_needed

    load = Load(1000, 3, 1000, {"encode": 1})
    loop, encoding = ceilings(INPUTS, load)
    # Event loop: 0.7 of one thread per instance at 2 ms a request; no writes.
    assert loop == pytest.approx(3 * 700 / 2.0)
    # Encoding: 2 threads at 80 % efficiency, 0.7 busy, 8 ms a request.
    assert encoding == pytest.approx(3 * 2 * 0.8 * 0.7 / 0.008)
    needed = instances_needed(INPUTS, load)
    assert min(ceilings(INPUTS, Load(1000, needed, 1000, {"encode": 1}))) >= 1000
    assert min(ceilings(INPUTS, Load(1000, needed - 1, 1000, {"encode": 1}))) < 1000


def test_fan_out_alone_can_make_a_rate_impossible() -> None:
    from cluster.capacity_model import instances_needed

    heavy = Inputs(**{**INPUTS.__dict__, "invalidation_ms": 10.0})
    with pytest.raises(ValueError, match="needs more than"):
        instances_needed(heavy, Load(1000, 3, 1000, {"store_memory": 1}), most=16)
