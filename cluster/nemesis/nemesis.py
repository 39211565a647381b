"""`Nemesis`: applies a fault schedule to a running `ClusterRun` and records every fault.

Lifecycle (driven by `experiments.runner` when `--nemesis` is given):

1. `route(instance_id, env)` — called by `ClusterRun.instance_env` before an instance starts:
   every link the schedule touches (`inst-N/redis`, `inst-N/postgres`; an invalidation fault
   touches `inst-N/redis`) gets a fault proxy (`cluster.nemesis.proxy`) and the instance's
   TMWS_REDIS_URL / TMWS_DATABASE_URL point at it. Links no fault touches stay direct.
2. `clock_skew_ns(swarm_index)` — called when a swarm is created: a clock fault skews that
   swarm's clock for the whole run (its rows and its answers to the NTP-style clock exchange).
3. `start(run)` — the schedule's clock starts; each timed fault runs in its own thread: wait
   until its start, apply, wait its duration, heal.
4. `stop()` — heals whatever is still applied (a failing experiment never leaves a server frozen
   or a link cut), then closes the proxies once the instances are gone (`close()`).

Process faults on Redis/PostgreSQL go through `cluster.faults` (the embedded driver: SIGSTOP/
SIGCONT, stop/restart); `kill:inst-N` is `ClusterRun.kill_instance` (Ray restarts the actor) and
is healed when every instance answers again (`refresh_endpoints`).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pyarrow as pa

from cluster.faults import EmbeddedDriver, FaultError, FaultInjector, FaultRecord, owned_servers
from cluster.nemesis.proxy import ProxyHub
from cluster.nemesis.schedule import Fault, Schedule

log = logging.getLogger(__name__)

#: faults.parquet
FAULTS_SCHEMA = pa.schema(
    [
        ("fault", pa.string()),
        ("kind", pa.string()),
        ("category", pa.string()),
        ("target", pa.string()),
        ("planned_start_ns", pa.int64()),
        ("planned_end_ns", pa.int64()),
        ("requested_ns", pa.int64()),
        ("applied_ns", pa.int64()),
        ("heal_requested_ns", pa.int64()),
        ("healed_ns", pa.int64()),
        ("detail", pa.string()),
        ("error", pa.string()),
    ]
)
#: Bound on bringing a killed instance back.
KILL_HEAL_S = 180.0
_URL_FIELDS = {"redis": "TMWS_REDIS_URL", "postgres": "TMWS_DATABASE_URL"}


@dataclass
class NemesisRecord:
    """One fault of the schedule as it really happened (wall-clock ns; None: did not happen)."""

    fault: Fault
    planned_start_ns: int | None = None
    planned_end_ns: int | None = None
    requested_ns: int | None = None
    applied_ns: int | None = None
    heal_requested_ns: int | None = None
    healed_ns: int | None = None
    detail: list[str] = field(default_factory=list)
    error: str | None = None

    def row(self) -> dict[str, Any]:
        return {
            "fault": self.fault.text(),
            "kind": self.fault.kind,
            "category": self.fault.category,
            "target": self.fault.target,
            "planned_start_ns": self.planned_start_ns,
            "planned_end_ns": self.planned_end_ns,
            "requested_ns": self.requested_ns,
            "applied_ns": self.applied_ns,
            "heal_requested_ns": self.heal_requested_ns,
            "healed_ns": self.healed_ns,
            "detail": "; ".join(self.detail),
            "error": self.error,
        }


def _instance_index(instance_id: str) -> int:
    """`<run>-inst-<i>` -> i."""
    return int(instance_id.rsplit("-", 1)[1])


def _via(url: str, port: int) -> str:
    """`url` with its host:port replaced by 127.0.0.1:`port` (user, password, path kept)."""
    parts = urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    netloc = f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc))


def links_of(schedule: Schedule) -> set[str]:
    """The proxied links a schedule needs (`inst-N/redis`...)."""
    out = set()
    for f in schedule.faults:
        if f.category == "network":
            out.add(f.target)
        elif f.category == "invalidation":
            out.add(f"{f.target}/redis")
    return out


class Nemesis:
    """A schedule, the proxies it needs and the record of what it did."""

    def __init__(self, schedule: Schedule, seed: int = 0) -> None:
        self.schedule = schedule
        self.links = links_of(schedule)
        self.hub = ProxyHub(seed) if self.links else None
        self.records = [NemesisRecord(f) for f in schedule.faults]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._injector: FaultInjector | None = None
        self._run: Any = None
        self._lock = threading.Lock()

    # -- bring-up hooks ---------------------------------------------------------------------

    def route(self, instance_id: str, env: dict[str, str]) -> dict[str, str]:
        """The URL settings of `instance_id` that go through a proxy (empty: none do)."""
        index = _instance_index(instance_id)
        out: dict[str, str] = {}
        for server, key in _URL_FIELDS.items():
            name = f"inst-{index}/{server}"
            if name not in self.links or self.hub is None or key not in env:
                continue
            parts = urlsplit(env[key])
            port = self.hub.link(
                name, parts.hostname or "127.0.0.1", parts.port or 0, resp=server == "redis"
            )
            out[key] = _via(env[key], port)
        return out

    def clock_skew_ns(self, swarm_index: int) -> int:
        """This swarm's clock skew (0: none); marks the clock fault applied."""
        skew_ms = self.schedule.clock_skews_ms().get(swarm_index, 0.0)
        if skew_ms:
            now = time.time_ns()
            for record in self.records:
                if record.fault.kind == "clock" and record.fault.swarm_index == swarm_index:
                    record.requested_ns = record.applied_ns = now
                    record.detail.append(f"swarm clock skewed by {skew_ms:+g} ms from creation")
        return int(skew_ms * 1_000_000)

    # -- the schedule -------------------------------------------------------------------------

    def start(self, run: Any) -> None:
        """Start the schedule's clock now; every timed fault runs in its own thread."""
        self._run = run
        owned = owned_servers(run)
        self._injector = FaultInjector(EmbeddedDriver(owned)) if owned is not None else None
        origin = time.time_ns()
        mono = time.monotonic()
        for record in self.records:
            f = record.fault
            if f.kind == "clock":
                continue
            record.planned_start_ns = origin + int(f.start_s * 1e9)
            record.planned_end_ns = origin + int(f.end_s * 1e9)
            thread = threading.Thread(
                target=self._run_fault, args=(record, mono), name=f"nemesis {f.text()}"
            )
            thread.daemon = True
            thread.start()
            self._threads.append(thread)
        log.warning("nemesis started: %s", self.schedule.text())

    def _run_fault(self, record: NemesisRecord, origin: float) -> None:
        f = record.fault
        # Waiting for the scheduled moment (interruptible by stop()), not a fixed sleep.
        if self._stop.wait(max(0.0, origin + f.start_s - time.monotonic())):
            return
        record.requested_ns = time.time_ns()
        try:
            heal_state = self._apply(record)
            record.applied_ns = time.time_ns()
        except Exception as exc:  # a fault that could not be applied is a recorded error
            record.error = f"apply: {type(exc).__name__}: {exc}"
            log.error("nemesis: %s not applied: %s", f.text(), exc)
            return
        self._stop.wait(max(0.0, origin + f.end_s - time.monotonic()))
        self._heal(record, heal_state)

    def _apply(self, record: NemesisRecord) -> Any:
        f = record.fault
        if f.kind in ("pause", "stop"):
            if self._injector is None:
                raise FaultError("the servers were given by URL: no process faults on them")
            done = self._injector.apply(f.server or "", f.kind)
            record.detail += done.commands
            return done
        if f.kind == "kill":
            record.detail.append(f"ray.kill({self._run.kill_instance(f.instance_index)})")
            return None
        assert self.hub is not None
        if f.kind == "latency":
            changes = {"latency_ms": f.param("latency_ms"), "jitter_ms": f.param("jitter_ms")}
        elif f.kind == "bandwidth":
            changes = {"bytes_per_s": f.param("bytes_per_s")}
        elif f.kind == "reset":
            changes = {"reset": True}
        elif f.kind == "partition":
            changes = {"partition": True}
        elif f.kind == "drop-invalidations":
            changes = {"drop_fraction": f.param("fraction")}
        else:  # delay-invalidations
            changes = {"delay_ms": f.param("delay_ms"), "delay_fraction": f.param("fraction", 1)}
        link = f.target if f.category == "network" else f"{f.target}/redis"
        self.hub.set(link, **changes)
        record.detail.append(f"proxy {link}: {changes}")
        return (link, tuple(changes))

    def _heal(self, record: NemesisRecord, state: Any) -> None:
        with self._lock:
            if record.healed_ns is not None:
                return
            record.heal_requested_ns = time.time_ns()
            try:
                if isinstance(state, FaultRecord):
                    assert self._injector is not None
                    self._injector.heal(state)
                    record.detail.append(state.commands[-1])
                elif record.fault.kind == "kill":
                    self._run.refresh_endpoints(timeout_s=KILL_HEAL_S)
                    record.detail.append("instance serving again (endpoints refreshed)")
                elif state is not None and self.hub is not None:
                    link, fields = state
                    self.hub.heal(link, *fields)
                record.healed_ns = time.time_ns()
            except Exception as exc:
                record.error = f"heal: {type(exc).__name__}: {exc}"
                log.error("nemesis: %s not healed: %s", record.fault.text(), exc)

    def stop(self) -> None:
        """End the schedule: faults not yet started never will; applied ones are healed now."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=KILL_HEAL_S + 30)
        now = time.time_ns()
        for record in self.records:
            if record.fault.kind == "clock" and record.applied_ns and record.healed_ns is None:
                record.heal_requested_ns = record.healed_ns = now

    def close(self) -> None:
        """Stop the proxies (after the instances are gone)."""
        self.stop()
        if self.hub is not None:
            self.hub.close()

    # -- results ------------------------------------------------------------------------------

    def table(self) -> pa.Table:
        """faults.parquet: one row per fault of the schedule."""
        return pa.Table.from_pylist([r.row() for r in self.records], schema=FAULTS_SCHEMA)

    def facts(self) -> dict[str, Any]:
        return {
            "schedule": self.schedule.text(),
            "seed": self.schedule.seed,
            "faults": [r.row() for r in self.records],
            "proxy_counters": self.hub.counters() if self.hub is not None else {},
        }
