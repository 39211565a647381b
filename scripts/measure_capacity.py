"""Measure the capacity model's inputs, check its prediction at a second scale point, write the doc.

    .venv/bin/python scripts/measure_capacity.py inputs   # ~5 min: docs/capacity.json
    .venv/bin/python scripts/measure_capacity.py check    # ~2 min: 3 instances, 200 agents
    .venv/bin/python scripts/measure_capacity.py doc      # regenerate docs/capacity.md's numbers
    .venv/bin/python scripts/measure_capacity.py all      # the three in a row

`inputs` starts the embedded PostgreSQL + Redis and a local Ray, and measures the service in the
form the cluster runs it: a `ServiceInstance` actor pinned to CPU 0 while this process (the load
client) runs on CPU 1. For every request class (cluster/capacity_load.py) it drives the instance
closed-loop to saturation and divides CPU time by requests — the instance's event-loop thread,
its other threads (MiniLM encoding, Ray), the PostgreSQL process tree, Redis. A second instance
that only listens measures what a published write costs each instance (pub/sub fan-out); an
`AgentSwarm` actor measures CPU per request and memory per agent session; a bare process
measures MiniLM with one and two torch threads. `check` runs the cloud request mix open-loop
through `ClusterRun` (3 instances, 2 swarms), predicts each component's CPU-seconds from the
history's request counts and compares with what the processes used. Run it under the heavy-run
lock; what other processes used meanwhile is recorded with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cluster import cpu_meter  # noqa: E402
from cluster.capacity_load import (  # noqa: E402
    CLOUD_METHODS,
    WRITE_CLASSES,
    drive,
    eval_queries,
    probe_routes,
    request_classes,
    row_class,
    seed_memories,
    workload_queries,
)
from cluster.capacity_model import predict_cpu_seconds, relative_error  # noqa: E402
from cluster.capacity_report import LIGHT, SATURATED, inputs_from, write_doc  # noqa: E402
from service.client import WsClient  # noqa: E402
from service.infra.embedded import EmbeddedInfra  # noqa: E402

JSON_PATH = ROOT / "docs" / "capacity.json"
DOC_PATH = ROOT / "docs" / "capacity.md"
SERVER_CPU, CLIENT_CPU = 0, 1
IDLE_S = 5.0
#: Open-loop rate of the swarm's cloud-mix measurement (one instance on one core keeps up).
SWARM_RATE = 30.0
#: Other processes' CPU (cores) under which the 2-thread encoder figure is trusted.
QUIET_CORES = 0.25
#: Used instead when it is not: two threads doing the work of one (no gain, twice the CPU).
ASSUMED_EFFICIENCY_2 = 0.5


# -- actors ---------------------------------------------------------------------------------------


def instance_env(infra: EmbeddedInfra, state: Path, instance_id: str) -> dict[str, str]:
    return {
        "TMWS_DATABASE_URL": infra.database_url,
        "TMWS_REDIS_URL": infra.redis_url,
        "TMWS_INSTANCE_ID": instance_id,
        "TMWS_STATE_DIR": str(state / instance_id),
        # The per-connection token bucket guards a public server; here it would cap the load.
        "TMWS_RATE_PER_S": "1000000",
        "TMWS_RATE_BURST": "1000000",
    }


def start_instance(infra: EmbeddedInfra, state: Path, instance_id: str, cpu: int) -> Any:
    """A ServiceInstance actor, serving, every thread pinned to `cpu`: (handle, InstanceInfo)."""
    from actors.service_instance import ServiceInstance

    actor = ServiceInstance.options(num_cpus=0).remote(instance_env(infra, state, instance_id))
    import ray

    info = ray.get(actor.start.remote(), timeout=300)
    cpu_meter.pin(info.pid, cpu)
    return actor, info


class Meter:
    """CPU of the instance (event-loop thread / the rest), PostgreSQL and Redis over a window."""

    def __init__(self, pid: int, loop_tid: int, pg: list[int], redis: list[int]) -> None:
        self.pid, self.loop_tid, self.pg, self.redis = pid, loop_tid, pg, redis

    def snapshot(self) -> dict[str, Any]:
        return {
            "t": time.perf_counter(),
            "instance": cpu_meter.split_threads(cpu_meter.thread_times(self.pid), self.loop_tid),
            "pg": cpu_meter.tree_times(self.pg),
            "redis": cpu_meter.tree_times(self.redis),
        }

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any]) -> dict[str, float]:
        return {
            "seconds": b["t"] - a["t"],
            "loop": b["instance"][0] - a["instance"][0],
            "offload": b["instance"][1] - a["instance"][1],
            "postgres": cpu_meter.tree_delta(a["pg"], b["pg"]),
            "redis": cpu_meter.tree_delta(a["redis"], b["redis"]),
        }


async def find_loop_thread(pid: int, clients: list[WsClient]) -> int:
    """The instance's event-loop thread: the one that works while it answers pings (no
    encoding, no database), so the busiest then."""
    before = cpu_meter.thread_times(pid)
    await drive(clients, lambda seq, rng: ("ping", None), 2.0, 4, seed=0)
    return cpu_meter.busiest_thread(before, cpu_meter.thread_times(pid))


# -- the input measurements -----------------------------------------------------------------------


async def measure_classes(ws_url: str, pid: int, infra: EmbeddedInfra, args: Any) -> dict[str, Any]:
    clients = [await WsClient.connect(ws_url, f"capacity-{i}") for i in range(args.connections)]
    out: dict[str, Any] = {}
    try:
        loop_tid = await find_loop_thread(pid, clients)
        meter = Meter(pid, loop_tid, infra.postgres.pids(), infra.redis.pids())
        await seed_memories(clients[0])
        idle_before = meter.snapshot()
        await asyncio.sleep(IDLE_S)  # an idle window: background CPU of every process
        out["_idle"] = Meter.delta(idle_before, meter.snapshot())
        eval_set = [q for qs in eval_queries().values() for q in qs]
        routes = await probe_routes(clients[0], [*eval_set, *workload_queries()])
        out["_routes"] = routes
        # Pools by route from every probed query: the workload's own routings are covered too.
        for name, make in request_classes(routes, eval_queries()["memory"]).items():
            await drive(clients, make, 1.0, args.in_flight, seed=1)  # warm caches and pools
            out[name] = await measure_class(meter, clients, make, args.seconds, args.in_flight)
            # One request at a time: nothing to batch or coalesce (a lightly loaded instance).
            out[name]["light"] = await measure_class(meter, clients[:1], make, args.seconds, 1)
            print(f"  {name:48s} {_line(out[name])}  | one at a time: {_line(out[name]['light'])}")
    finally:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
    return out


async def measure_class(
    meter: Meter, clients: list[WsClient], make: Any, seconds: float, in_flight: int
) -> dict[str, Any]:
    """CPU per request of one class, closed loop with `in_flight` requests per connection."""
    before = meter.snapshot()
    ok, errors, seen = await drive(clients, make, seconds, in_flight, seed=2)
    return {"requests": ok, "errors": errors, "seen": dict(seen)} | Meter.delta(
        before, meter.snapshot()
    )


def _line(m: dict[str, Any]) -> str:
    n = max(m["requests"], 1)
    costs = "/".join(f"{m[k] * 1000 / n:.2f}" for k in ("loop", "offload", "postgres"))
    return f"{m['requests'] / m['seconds']:6.0f} req/s {costs} ms"


async def measure_fanout(
    ws_a: str, ws_b: str, pid_b: int, redis: list[int], seconds: float
) -> dict[str, Any]:
    """A write through A costs B (which only listens) this much CPU; Redis this much per write."""
    clients = [await WsClient.connect(ws_a, f"fanout-{i}") for i in range(8)]
    observer = await WsClient.connect(ws_b, "fanout-observer")

    def cpu_b() -> float:
        return sum(cpu_meter.thread_times(pid_b).values())

    try:
        received0 = (await observer.call("get_cache_stats", {}))["invalidations_received"]
        idle0, redis0, t0 = cpu_b(), cpu_meter.tree_times(redis), time.perf_counter()
        await asyncio.sleep(seconds)  # B idle: its baseline
        idle_s = time.perf_counter() - t0
        idle_rate = (cpu_b() - idle0) / idle_s
        redis_idle_rate = cpu_meter.tree_delta(redis0, cpu_meter.tree_times(redis)) / idle_s
        busy0, redis1, t1 = cpu_b(), cpu_meter.tree_times(redis), time.perf_counter()
        make = request_classes({}, eval_queries()["memory"])["invalidate_cache"]
        writes, errors, _ = await drive(clients, make, seconds, 4, seed=3)
        busy_s = time.perf_counter() - t1
        busy = cpu_b() - busy0 - idle_rate * busy_s
        redis_busy = cpu_meter.tree_delta(redis1, cpu_meter.tree_times(redis))
        redis_busy -= redis_idle_rate * busy_s
        stats = await observer.call("get_cache_stats", {})
        received = stats["invalidations_received"] - received0
    finally:
        await asyncio.gather(*(c.close() for c in [*clients, observer]), return_exceptions=True)
    return {
        "writes": writes,
        "errors": errors,
        "received_by_listener": received,
        "seconds": busy_s,
        "invalidation_ms": max(busy, 0.0) * 1000 / max(received, 1),
        # Two subscribers (A and B) per publish.
        "redis_publish_ms_per_subscriber": max(redis_busy, 0.0) * 1000 / max(writes, 1) / 2,
    }


def measure_swarm(ws_url: str, agents: int, seconds: float) -> dict[str, Any]:
    """An AgentSwarm actor on CPU 1 driving the instance: CPU per request, memory per agent."""
    import ray

    from actors.agent_swarm import AgentSwarm
    from actors.agents import Endpoint, SwarmConfig

    config = SwarmConfig(
        swarm_id="capacity-swarm",
        run_id="capacity",
        scenario="capacity",
        agent_ids=tuple(f"capacity-agent-{i:04d}" for i in range(agents)),
        home_instances=(0,) * agents,
        endpoints=(Endpoint("capacity-a", ws_url),),
    )
    swarm = AgentSwarm.options(num_cpus=0).remote(config)
    ray.get(swarm.node_id.remote(), timeout=120)
    (pid,) = ray_processes("AgentSwarm")
    cpu_meter.pin(pid, CLIENT_CPU)
    proc = psutil.Process(pid)
    rss0 = proc.memory_info().rss
    ray.get(swarm.connect_all.remote(), timeout=300)
    out: dict[str, Any] = {
        "agents": agents,
        "rss_mb_base": rss0 / 2**20,
        "rss_mb_per_agent": (proc.memory_info().rss - rss0) / 2**20 / agents,
    }
    cpu0 = sum(cpu_meter.tree_times([pid]).values())
    time.sleep(IDLE_S)  # sessions open, nothing sent: heartbeats and timers only
    out["idle_cores"] = (sum(cpu_meter.tree_times([pid]).values()) - cpu0) / IDLE_S
    cloud = [{"method": m, "weight": w} for m, w in CLOUD_METHODS.items()]
    workloads = {
        # Closed loop, cheap answers: the most one swarm core can drive.
        "ping": {"mix": {"ping": 1}, "requests_per_agent": 1_000_000, "max_duration_s": seconds},
        # What the cloud preset runs: the mix, open loop at a rate the instance keeps up with.
        "cloud": {
            "mix": cloud,
            "rate": {
                "start_rate": SWARM_RATE,
                "peak_rate": SWARM_RATE,
                "ramp_up_s": 0.5,
                "sustain_s": seconds,
                "ramp_down_s": 0.5,
            },
        },
    }
    for name, workload in workloads.items():
        cpu0, t0 = sum(cpu_meter.tree_times([pid]).values()), time.perf_counter()
        report = ray.get(swarm.run_phase.remote(name, workload), timeout=seconds + 120)
        cpu = sum(cpu_meter.tree_times([pid]).values()) - cpu0
        ray.get(swarm.drain.remote(), timeout=60)
        out[name] = {
            "requests": report.recorded,
            "failed": report.failed,
            "cpu_s": cpu,
            "seconds": time.perf_counter() - t0,
            "ms_per_request": cpu * 1000 / max(report.recorded, 1),
        }
    ray.get(swarm.close.remote(), timeout=60)
    ray.kill(swarm)
    return out


ENCODER_PROBE = """
import json, sys, time
import torch
from service.embedding import encode_sync, load_model

seconds, texts = float(sys.argv[1]), json.loads(sys.argv[2])
load_model()
out = {}
for threads in (1, 2):
    torch.set_num_threads(threads)
    for batch in (1, 16):
        encode_sync(texts[:batch])
        n, t0, c0 = 0, time.perf_counter(), time.process_time()
        while time.perf_counter() - t0 < seconds:
            encode_sync((texts[n % len(texts):] + texts)[:batch])
            n += batch
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        out[f"threads={threads} batch={batch}"] = {"texts_per_s": n / wall, "cpu_ms": cpu * 1000 / n}
print(json.dumps(out))
"""


def wait_for_quiet(timeout_s: float) -> float:
    """Wait (bounded) until other processes use under QUIET_CORES; returns what they last used."""
    deadline = time.monotonic() + timeout_s
    while True:
        contention = cpu_meter.Contention()
        time.sleep(2.0)  # a sampling window of the machine's load, not a wait for an event
        other = contention.other_cores()
        if other < QUIET_CORES or time.monotonic() >= deadline:
            return other


def measure_encoder(seconds: float, quiet_wait_s: float = 180.0) -> dict[str, Any]:
    """MiniLM with 1 and 2 torch threads: CPU per text, and texts/s."""
    texts = [q for qs in eval_queries().values() for q in qs]
    wait_for_quiet(quiet_wait_s)
    contention = cpu_meter.Contention()
    done = subprocess.run(
        [sys.executable, "-c", ENCODER_PROBE, str(seconds), json.dumps(texts)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if done.returncode != 0:
        raise RuntimeError(f"encoder probe failed: {done.stderr[-2000:]}")
    rates = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    one, two = rates["threads=1 batch=16"]["cpu_ms"], rates["threads=2 batch=16"]["cpu_ms"]
    other = contention.other_cores()
    # Two torch threads need two free cores: while another process holds one, the second thread
    # spins waiting for it and the figure says nothing about a cloud node's dedicated cores.
    reliable = other < QUIET_CORES
    return {
        "probe": rates,
        "efficiency_2_threads_measured": one / two,
        "reliable": reliable,
        "efficiency_2_threads": one / two if reliable else ASSUMED_EFFICIENCY_2,
        "other_cores_while_measuring": other,
    }


def pg_connections(database_url: str) -> int:
    import asyncpg

    async def count() -> int:
        conn = await asyncpg.connect(database_url)
        try:
            sql = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            return int(await conn.fetchval(sql))
        finally:
            await conn.close()

    return asyncio.run(count())


def run_inputs(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tmws-capacity-") as tmp:
        state = Path(tmp)
        infra = EmbeddedInfra.start(state / "infra")
        servers = [*infra.postgres.pids(), *infra.redis.pids()]
        try:
            ray.init(
                address="local",
                num_cpus=4,
                include_dashboard=False,
                configure_logging=False,
                log_to_driver=False,
            )
            # Keep the handles: Ray stops an actor whose last handle is dropped.
            actor_a, info_a = start_instance(infra, state, "capacity-a", SERVER_CPU)
            os.sched_setaffinity(0, {CLIENT_CPU})  # the load client
            contention = cpu_meter.Contention(servers)
            rss_a = psutil.Process(info_a.pid).memory_info().rss / 2**20
            print(f"instance A: pid {info_a.pid} on CPU {SERVER_CPU}, {rss_a:.0f} MB", flush=True)
            classes = asyncio.run(measure_classes(info_a.ws_url, info_a.pid, infra, args))
            connections = pg_connections(infra.database_url)
            actor_b, info_b = start_instance(infra, state, "capacity-b", CLIENT_CPU)
            fanout = asyncio.run(
                measure_fanout(
                    info_a.ws_url, info_b.ws_url, info_b.pid, infra.redis.pids(), args.seconds
                )
            )
            print(f"  fan-out: {json.dumps(fanout)}", flush=True)
            swarm = measure_swarm(info_a.ws_url, args.swarm_agents, args.seconds)
            print(f"  swarm: {json.dumps(swarm)}", flush=True)
            other_cores = contention.other_cores()
            print(f"  other processes used {other_cores:.2f} cores meanwhile", flush=True)
            for actor in (actor_a, actor_b):
                ray.get(actor.stop.remote(), timeout=60)
        finally:
            ray.shutdown()
            infra.destroy()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    encoder = measure_encoder(args.seconds)
    print(f"  encoder: {json.dumps(encoder)}", flush=True)
    print(f"inputs measured in {time.monotonic() - started:.0f}s", flush=True)
    return {
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpus": os.cpu_count(),
            "mem_gib": round(psutil.virtual_memory().total / 2**30),
        },
        "settings": {
            k: getattr(args, k) for k in ("seconds", "connections", "in_flight", "swarm_agents")
        },
        "instance_rss_mb": rss_a,
        "classes": classes,
        "fanout": fanout,
        "swarm": swarm,
        "encoder": encoder,
        "postgres_connections_one_instance": connections,
        "pool_max": int(os.environ.get("TMWS_POOL_MAX", "30")),
        "other_cores_while_measuring": other_cores,
    }


# -- the check at a second scale point ------------------------------------------------------------


def ray_processes(marker: str) -> list[int]:
    """Pids of this driver's Ray workers whose title names `marker` (ray::ServiceInstance)."""
    out = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if any(marker in part for part in proc.cmdline()):
                out.append(proc.pid)
    return out


def check_preset(args: argparse.Namespace) -> Any:
    from cluster.topology import ScalePreset

    return ScalePreset.from_dict(
        {
            "name": "capacity-check",
            "instances": 3,
            "swarms": 2,
            "agents_per_swarm": args.check_agents // 2,
            "instance_cpus": 0.5,
            "swarm_cpus": 0.5,
            "local_num_cpus": 4,
            "instance_env": {"TMWS_POOL_MIN": 2, "TMWS_POOL_MAX": 10},
            "warmup_workload": {"mix": {"ping": 1}, "requests_per_agent": 1},
        }
    )


def run_check(args: argparse.Namespace, data: dict[str, Any]) -> dict[str, Any]:
    """The cloud mix open loop on 3 instances and 2 swarms: predicted vs used CPU-seconds."""
    import pyarrow.compute as pc

    from cluster.run import ClusterRun, RunConfig
    from service.patterns.registry import PatternRegistry

    preset = check_preset(args)
    rate = args.check_rate
    workload = {
        "mix": [{"method": m, "weight": w} for m, w in CLOUD_METHODS.items()],
        "rate": {
            "start_rate": rate,
            "peak_rate": rate,
            "ramp_up_s": 1,
            "sustain_s": args.check_seconds,
            "ramp_down_s": 1,
        },
        "request_timeout_s": 10,
    }
    registry = PatternRegistry.load(ROOT / "configs" / "patterns.yaml")
    types = {p.name: p.type for p in registry.patterns}
    with tempfile.TemporaryDirectory(prefix="tmws-capacity-check-") as tmp:
        infra = EmbeddedInfra.start(Path(tmp) / "infra")
        try:
            config = RunConfig(
                scenario="capacity-check",
                preset=preset,
                out_dir=Path(tmp) / "run",
                infra=infra,
                progress=False,
            )
            with ClusterRun(config) as run:
                run.phase("warm-up", preset.warmup_workload)
                groups = [
                    ray_processes("ServiceInstance"),
                    ray_processes("AgentSwarm"),
                    infra.postgres.pids(),
                    infra.redis.pids(),
                ]
                quiet = [cpu_meter.tree_times(g) for g in groups[:2]]
                time.sleep(IDLE_S)  # a quiet window: what Ray adds to an idle actor (reported)
                idle_actor = {
                    name: cpu_meter.tree_delta(q, cpu_meter.tree_times(g)) / IDLE_S / len(g)
                    for name, q, g in zip(("instances", "swarms"), quiet, groups, strict=False)
                }
                before = [cpu_meter.tree_times(g) for g in groups]
                t0 = time.perf_counter()
                run.phase("load", workload)
                duration = time.perf_counter() - t0
                after = [cpu_meter.tree_times(g) for g in groups]
                table = run.gather().table
        finally:
            infra.destroy()
    load_rows = table.filter(pc.equal(table["phase"], "load"))
    ok_rows = load_rows.filter(load_rows["success"])
    routes = data["classes"]["_routes"]
    counts: Counter[str] = Counter(
        row_class(row, types, routes)
        for row in ok_rows.select(
            ["method", "pattern_name", "cache_hit", "route", "key"]
        ).to_pylist()
    )
    writes = sum(n for name, n in counts.items() if name in WRITE_CLASSES)
    predicted = {
        regime: predict_cpu_seconds(
            inputs_from(data, regime), counts, writes, 3, args.check_agents, duration
        )
        for regime in (SATURATED, LIGHT)
    }
    components = {}
    names = ("instances", "swarms", "postgres", "redis")
    for name, b, a in zip(names, before, after, strict=True):
        used = cpu_meter.tree_delta(b, a)
        components[name] = {"measured_cpu_s": used}
        for regime, prediction in predicted.items():
            guess = getattr(prediction, name)
            components[name][f"predicted_{regime}_cpu_s"] = guess
            components[name][f"error_{regime}"] = relative_error(used, guess)
    failed = load_rows.filter(pc.invert(load_rows["success"]))
    return {
        "rate": rate,
        "agents": args.check_agents,
        "duration_s": duration,
        "requests": load_rows.num_rows,
        "success": ok_rows.num_rows,
        "errors": dict(Counter(failed["error_reason"].to_pylist())),
        "counts": dict(counts),
        "idle_actor_cores": idle_actor,
        "components": components,
    }


# -- command line ---------------------------------------------------------------------------------


def save(data: dict[str, Any]) -> None:
    tmp = JSON_PATH.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, JSON_PATH)


def load() -> dict[str, Any]:
    if not JSON_PATH.exists():
        raise SystemExit(f"measure_capacity: no {JSON_PATH}: run `inputs` first")
    return dict(json.loads(JSON_PATH.read_text()))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("command", choices=("inputs", "encoder", "check", "doc", "all"))
    parser.add_argument("--seconds", type=float, default=5.0, help="measured window per class")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--in-flight", type=int, default=4, help="per connection")
    parser.add_argument("--swarm-agents", type=int, default=200)
    parser.add_argument("--check-rate", type=float, default=25.0, help="req/s of the check run")
    parser.add_argument("--check-seconds", type=float, default=40.0)
    parser.add_argument("--check-agents", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for name, value in (
        ("HF_HUB_OFFLINE", "1"),
        ("TRANSFORMERS_OFFLINE", "1"),
        ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0"),
    ):
        os.environ.setdefault(name, value)
    if args.command in ("inputs", "all"):
        if (os.cpu_count() or 1) < 2:
            raise SystemExit("measure_capacity: needs two CPUs (instance and client apart)")
        save(run_inputs(args))
    if args.command == "encoder":
        data = load()
        data["encoder"] = measure_encoder(args.seconds)
        save(data)
    if args.command in ("check", "all"):
        data = load()
        data["check"] = run_check(args, data)
        save(data)
    if args.command in ("doc", "all"):
        write_doc(load(), DOC_PATH)
        print(f"wrote {DOC_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
