"""The capacity model: measured per-request costs → cores, memory, nodes and connections (pure).

Every input is measured by `scripts/measure_capacity.py` (docs/capacity.md says how):

- a request class costs CPU in core-milliseconds per request, split where it runs: the instance's
  event-loop thread (one Python thread: an instance never uses more than one core for it), the
  instance's other threads (MiniLM encoding, serialised by one lock with TMWS_TORCH_THREADS=1),
  PostgreSQL and Redis;
- every write is published once and handled by every instance (pub/sub fan-out): its cost on a
  listening instance is paid once per instance, so it does not shrink as instances are added;
- a swarm is one event loop too: it drives at most one core's worth of requests;
- PostgreSQL connections are instances × pool max, whatever the load.

Costs are linear in the rate. The model is checked against a run at a second scale point (the
measure script's `check` step) and its error printed next to its prediction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Fraction of a core (or of an event loop) a plan may use: headroom for bursts and GC.
TARGET_UTILISATION = 0.7
#: vCPU sizes offered by the usual general-purpose node families (4 GiB per vCPU).
NODE_VCPUS = (2, 4, 8, 16, 32)
GIB_PER_VCPU = 4


@dataclass(frozen=True)
class RequestCost:
    """CPU one request of a class costs, core-milliseconds."""

    loop_ms: float
    offload_ms: float = 0.0
    postgres_ms: float = 0.0
    redis_ms: float = 0.0

    @property
    def instance_ms(self) -> float:
        return self.loop_ms + self.offload_ms

    def scaled(self, weight: float) -> RequestCost:
        return RequestCost(
            self.loop_ms * weight,
            self.offload_ms * weight,
            self.postgres_ms * weight,
            self.redis_ms * weight,
        )

    def __add__(self, other: RequestCost) -> RequestCost:
        return RequestCost(
            self.loop_ms + other.loop_ms,
            self.offload_ms + other.offload_ms,
            self.postgres_ms + other.postgres_ms,
            self.redis_ms + other.redis_ms,
        )


@dataclass(frozen=True)
class Inputs:
    """Everything the model needs, each number measured."""

    costs: Mapping[str, RequestCost]
    #: A listening instance's CPU per published write (core-ms), and Redis's per subscriber.
    invalidation_ms: float
    redis_publish_ms_per_subscriber: float
    #: A swarm's CPU per request it sends and records (core-ms).
    swarm_ms: float
    swarm_rss_mb_per_agent: float
    swarm_base_rss_mb: float
    instance_rss_mb: float
    #: Background CPU with sessions open and nothing sent (heartbeats, timers), cores.
    instance_idle_cores: float = 0.0
    swarm_idle_cores_per_agent: float = 0.0
    postgres_idle_cores: float = 0.0
    redis_idle_cores: float = 0.0
    pool_max: int = 30
    #: MiniLM encode throughput with 2 torch threads over twice that with 1 (1.0: linear).
    encode_efficiency_2: float = 1.0


@dataclass(frozen=True)
class Load:
    """What to serve: a rate, instances, agents and the request mix (class → weight)."""

    rate: float
    instances: int
    agents: int
    mix: Mapping[str, float]
    #: Classes that write (each write is one invalidation message to every instance).
    writes: frozenset[str] = frozenset({"store_memory", "invalidate_cache"})

    def fractions(self) -> dict[str, float]:
        total = sum(self.mix.values())
        if total <= 0:
            raise ValueError("a load needs a mix with positive weights")
        return {name: weight / total for name, weight in self.mix.items()}

    @property
    def write_rate(self) -> float:
        return self.rate * sum(f for name, f in self.fractions().items() if name in self.writes)


def mix_cost(inputs: Inputs, load: Load) -> RequestCost:
    """The average cost of one request of the mix; a class without a measurement is an error."""
    missing = set(load.mix) - set(inputs.costs)
    if missing:
        raise ValueError(f"no measured cost for request classes {sorted(missing)}")
    total = RequestCost(0.0)
    for name, fraction in load.fractions().items():
        total = total + inputs.costs[name].scaled(fraction)
    return total


@dataclass(frozen=True)
class InstanceDemand:
    """Cores one instance needs: its event loop, its other threads, in total."""

    rate: float
    loop_cores: float
    offload_cores: float
    fanout_cores: float
    idle_cores: float

    @property
    def total_cores(self) -> float:
        return self.loop_cores + self.offload_cores + self.fanout_cores + self.idle_cores

    @property
    def loop_busy(self) -> float:
        """Share of the single event-loop thread in use (fan-out runs on it too)."""
        return self.loop_cores + self.fanout_cores


def instance_demand(inputs: Inputs, load: Load) -> InstanceDemand:
    """Per instance: its share of the requests, and every write's invalidation."""
    cost = mix_cost(inputs, load)
    per_instance = load.rate / load.instances
    return InstanceDemand(
        rate=per_instance,
        loop_cores=per_instance * cost.loop_ms / 1000.0,
        offload_cores=per_instance * cost.offload_ms / 1000.0,
        fanout_cores=load.write_rate * inputs.invalidation_ms / 1000.0,
        idle_cores=inputs.instance_idle_cores,
    )


def node_vcpus(cores: float, utilisation: float = TARGET_UTILISATION) -> int:
    """The smallest usual node size that runs `cores` of work at `utilisation`."""
    wanted = cores / utilisation
    for size in NODE_VCPUS:
        if size >= wanted:
            return size
    raise ValueError(f"{wanted:.1f} vCPU do not fit one node: split the work")


def torch_threads(
    offload_cores: float, inputs: Inputs, utilisation: float = TARGET_UTILISATION
) -> tuple[int, float]:
    """TMWS_TORCH_THREADS for `offload_cores` of single-thread encoding work, and the cores that
    work then uses. Encodes are serialised (one lock), so one thread gives at most one core; with
    more, each thread does `encode_efficiency_2` of a single thread's work (measured at 2)."""
    if offload_cores <= utilisation:
        return 1, offload_cores
    efficiency = min(max(inputs.encode_efficiency_2, 0.05), 1.0)
    threads = 2
    while threads * efficiency * utilisation < offload_cores:
        threads *= 2
    return threads, offload_cores / efficiency


@dataclass(frozen=True)
class Plan:
    """Nodes and limits for one load; `warnings` say where a single process is the limit."""

    demand: InstanceDemand
    #: TMWS_TORCH_THREADS an instance needs (encodes run one at a time, on this many threads).
    torch_threads: int
    #: Cores one instance uses with that many threads (parallel encoding is less efficient).
    instance_cores: float
    instance_node_vcpus: int
    instance_node_gib: int
    swarms: int
    swarm_cores: float
    swarm_nodes: int
    swarm_node_vcpus: int
    swarm_rss_gib: float
    postgres_cores: float
    postgres_connections: int
    redis_cores: float
    warnings: tuple[str, ...] = field(default_factory=tuple)


def plan(
    inputs: Inputs,
    load: Load,
    max_swarm_node_vcpus: int = 8,
    utilisation: float = TARGET_UTILISATION,
) -> Plan:
    """Size every part for `load` at `utilisation`: one instance per node, swarms packed."""
    demand = instance_demand(inputs, load)
    warnings = []
    if demand.loop_busy > utilisation:
        warnings.append(
            f"one instance's event loop would be {demand.loop_busy:.0%} busy at "
            f"{demand.rate:.0f} req/s: more instances, not bigger nodes "
            f"(>= {math.ceil(load.instances * demand.loop_busy / utilisation)} instances)"
        )
    threads, encode_cores = torch_threads(demand.offload_cores, inputs, utilisation)
    if threads > 2:
        warnings.append(
            f"encoding needs TMWS_TORCH_THREADS={threads}: scaling past 2 threads is "
            f"extrapolated from the 2-thread efficiency ({inputs.encode_efficiency_2:.0%})"
        )
    instance_cores = demand.total_cores - demand.offload_cores + encode_cores
    cost = mix_cost(inputs, load)
    swarm_cores = (
        load.rate * inputs.swarm_ms / 1000.0 + load.agents * inputs.swarm_idle_cores_per_agent
    )
    # A swarm is one event loop: keep each under `utilisation` of a core.
    swarms = max(1, math.ceil(swarm_cores / utilisation))
    swarm_nodes = max(1, math.ceil(swarm_cores / utilisation / max_swarm_node_vcpus))
    swarm_node_vcpus = node_vcpus(swarm_cores / swarm_nodes, utilisation)
    rss_gib = (
        inputs.swarm_base_rss_mb * swarms + inputs.swarm_rss_mb_per_agent * load.agents
    ) / 1024
    instance_vcpus = node_vcpus(instance_cores, utilisation)
    instance_gib = max(instance_vcpus * GIB_PER_VCPU, math.ceil(inputs.instance_rss_mb / 1024 * 2))
    write_rate = load.write_rate
    return Plan(
        demand=demand,
        torch_threads=threads,
        instance_cores=instance_cores,
        instance_node_vcpus=instance_vcpus,
        instance_node_gib=instance_gib,
        swarms=swarms,
        swarm_cores=swarm_cores,
        swarm_nodes=swarm_nodes,
        swarm_node_vcpus=swarm_node_vcpus,
        swarm_rss_gib=rss_gib,
        postgres_cores=load.rate * cost.postgres_ms / 1000.0 + inputs.postgres_idle_cores,
        postgres_connections=load.instances * inputs.pool_max,
        redis_cores=(
            load.rate * cost.redis_ms
            + write_rate * load.instances * inputs.redis_publish_ms_per_subscriber
        )
        / 1000.0
        + inputs.redis_idle_cores,
        warnings=tuple(warnings),
    )


@dataclass(frozen=True)
class Prediction:
    """CPU-seconds a run should use, by component, from its request counts."""

    instances: float
    swarms: float
    postgres: float
    redis: float


def predict_cpu_seconds(
    inputs: Inputs,
    counts: Mapping[str, int],
    writes: int,
    instances: int,
    agents: int,
    duration_s: float,
) -> Prediction:
    """What a run that served `counts` requests per class (and `writes` writes) in `duration_s`
    should have cost, summed over its instances, swarms and servers (background included)."""
    missing = set(counts) - set(inputs.costs)
    if missing:
        raise ValueError(f"no measured cost for request classes {sorted(missing)}")
    total = RequestCost(0.0)
    for name, count in counts.items():
        total = total + inputs.costs[name].scaled(count)
    requests = sum(counts.values())
    return Prediction(
        instances=(total.instance_ms + writes * instances * inputs.invalidation_ms) / 1000.0
        + instances * inputs.instance_idle_cores * duration_s,
        swarms=requests * inputs.swarm_ms / 1000.0
        + agents * inputs.swarm_idle_cores_per_agent * duration_s,
        postgres=total.postgres_ms / 1000.0 + inputs.postgres_idle_cores * duration_s,
        redis=(total.redis_ms + writes * instances * inputs.redis_publish_ms_per_subscriber)
        / 1000.0
        + inputs.redis_idle_cores * duration_s,
    )


def relative_error(measured: float, predicted: float) -> float | None:
    """(measured − predicted) / predicted; None when nothing was predicted."""
    return None if predicted <= 0 else (measured - predicted) / predicted


def ceilings(
    inputs: Inputs,
    load: Load,
    max_threads: int = 2,
    utilisation: float = TARGET_UTILISATION,
) -> tuple[float, float]:
    """The highest total rate `load.instances` instances serve with their mix, by each
    single-process limit: (event loop, encoding on up to `max_threads` torch threads)."""
    cost = mix_cost(inputs, load)
    write_share = load.write_rate / load.rate if load.rate else 0.0
    per_request_loop = cost.loop_ms / load.instances + write_share * inputs.invalidation_ms
    loop = 1000.0 * utilisation / per_request_loop if per_request_loop else math.inf
    efficiency = 1.0 if max_threads == 1 else min(inputs.encode_efficiency_2, 1.0)
    encode_capacity = max_threads * efficiency * utilisation
    per_instance = cost.offload_ms / 1000.0
    encoding = load.instances * encode_capacity / per_instance if per_instance else math.inf
    return loop, encoding


def instances_needed(
    inputs: Inputs,
    load: Load,
    max_threads: int = 2,
    utilisation: float = TARGET_UTILISATION,
    most: int = 256,
) -> int:
    """The fewest instances that serve `load.rate` within both single-process limits."""
    for count in range(1, most + 1):
        trial = Load(load.rate, count, load.agents, load.mix, load.writes)
        if min(ceilings(inputs, trial, max_threads, utilisation)) >= load.rate:
            return count
    raise ValueError(f"{load.rate:.0f} req/s needs more than {most} instances (pub/sub fan-out?)")
