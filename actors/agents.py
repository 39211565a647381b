"""Simulated agents as asyncio tasks (Ray-free): identity, one WebSocket session each, reconnect.

A `Swarm` holds hundreds of `SimAgent`s in one event loop. Each agent has its own agent id and
namespace (= agent id) and its own session to a service instance, starting at its home instance;
when that connection dies the agent moves on to the NEXT instance in the directory. Every request
an agent starts ends as exactly one history row, whatever happens to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from websockets.exceptions import ConnectionClosed

from actors.loop_health import LoopMonitor
from actors.recorder import (
    CLIENT_ERROR,
    CLIENT_TIMEOUT,
    CONNECTION_LOST,
    NO_INSTANCE,
    Outcome,
    Recorder,
    SessionInfo,
    SwarmOutput,
)
from actors.workload import RequestSpec, Workload, open_loop_offsets
from service.client import RpcError

#: The swarm's clock skew (a clock fault; one swarm per process, so one value per process).
_SKEW_NS = [0]


def wall_ns() -> int:
    """This process's wall clock as the swarm sees it (skewed by a clock fault)."""
    return time.time_ns() + _SKEW_NS[0]


log = logging.getLogger(__name__)

#: Extra time, beyond a request's own timeout, that a phase waits for in-flight requests.
DRAIN_GRACE_S = 5.0
CONNECT_TIMEOUT_S = 10.0


class Client(Protocol):
    """What an agent needs from a session client (`service.client.WsClient` fits)."""

    session_id: str
    instance_id: str

    async def call(self, method: str, params: dict[str, Any], timeout: float) -> Any: ...  # noqa: ASYNC109

    async def close(self) -> None: ...


Connector = Callable[[str, str, str | None], Awaitable[Client]]


@dataclass(frozen=True)
class Endpoint:
    """Where one service instance listens right now."""

    instance_id: str
    url: str
    node_id: str | None = None


class Directory:
    """The current endpoints of all instances, shared by a swarm's agents (updated on restarts)."""

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        if not endpoints:
            raise ValueError("a swarm needs at least one service instance")
        self._endpoints = list(endpoints)

    def __len__(self) -> int:
        return len(self._endpoints)

    def __getitem__(self, index: int) -> Endpoint:
        return self._endpoints[index % len(self._endpoints)]

    def update(self, endpoints: Sequence[Endpoint]) -> None:
        """Replace the endpoints (same instances in the same order; urls may have changed)."""
        if len(endpoints) != len(self._endpoints):
            raise ValueError("the number of instances cannot change during a run")
        self._endpoints = list(endpoints)

    def node_of(self, instance_id: str | None) -> str | None:
        for ep in self._endpoints:
            if ep.instance_id == instance_id:
                return ep.node_id
        return None


def classify_error(exc: BaseException) -> Outcome:
    """Map what a call raised to an outcome: server RpcError keeps its code; the rest are ours."""
    if isinstance(exc, RpcError):
        applied = exc.data.get("applied") if isinstance(exc.data, dict) else None
        return Outcome(
            error_code=exc.code,
            error_reason=exc.reason or "rpc_error",
            error_message=exc.message,
            applied=applied if isinstance(applied, bool) else None,
        )
    if isinstance(exc, TimeoutError):
        return Outcome.client_failure(CLIENT_TIMEOUT, "no response within the request timeout")
    if isinstance(exc, ConnectionClosed | ConnectionError | OSError):
        return Outcome.client_failure(CONNECTION_LOST, f"{type(exc).__name__}: {exc}")
    return Outcome.client_failure(CLIENT_ERROR, f"{type(exc).__name__}: {exc}")


class SimAgent:
    """One simulated agent: identity, a session to an instance, and failover to the next one."""

    def __init__(
        self,
        agent_id: str,
        home: int,
        directory: Directory,
        connector: Connector,
        recorder: Recorder,
        token: str | None = None,
        slot: int = 0,
    ) -> None:
        self.agent_id = agent_id
        self.namespace = agent_id
        #: Rank among the agents starting on the same instance (picks the agent's team).
        self.slot = slot
        self._index = home
        self._directory = directory
        self._connector = connector
        self._recorder = recorder
        self._token = token
        self._client: Client | None = None
        self._endpoint: Endpoint | None = None
        self._lock = asyncio.Lock()
        self.reconnects = 0
        self.instances_seen: list[str] = []

    @property
    def connected_instance(self) -> str | None:
        return self._client.instance_id if self._client is not None else None

    async def connect(self, timeout_s: float = CONNECT_TIMEOUT_S) -> bool:
        """Open a session, trying each instance once from the current one; False if none answers."""
        async with self._lock:
            return await self._connect_locked(timeout_s)

    async def _connect_locked(self, timeout_s: float) -> bool:
        if self._client is not None:
            return True
        for _ in range(len(self._directory)):
            endpoint = self._directory[self._index]
            try:
                async with asyncio.timeout(timeout_s):
                    self._client = await self._connector(endpoint.url, self.agent_id, self._token)
            except Exception as exc:  # any failure to connect means: try the next instance
                log.debug("agent %s: connect to %s failed: %r", self.agent_id, endpoint.url, exc)
                self._index += 1
                continue
            self._endpoint = endpoint
            self.instances_seen.append(self._client.instance_id)
            return True
        return False

    async def _drop(self, client: Client) -> None:
        """Forget a dead session and move to the next instance (only once per dead client)."""
        async with self._lock:
            if self._client is not client:
                return
            self._client = None
            self._index += 1
            self.reconnects += 1
        with contextlib.suppress(Exception):
            await client.close()

    async def send(
        self,
        request: RequestSpec,
        phase: str,
        timeout_s: float,
        intended_ns: int | None = None,
    ) -> bool:
        """Send one request and record exactly one row; returns the row's success.

        `intended_ns` (open loop) is the scheduled send time: latency is measured from it, and
        the row keeps the actual send time beside it.
        """
        t_send = wall_ns()
        session = SessionInfo(self.agent_id)
        outcome: Outcome
        try:
            outcome, session = await self._send(request, timeout_s)
        except asyncio.CancelledError:
            outcome = Outcome.client_failure(CLIENT_ERROR, "cancelled at the end of the phase")
            self._record(phase, request, session, outcome, t_send, intended_ns)
            raise
        except Exception as exc:  # the row must exist whatever went wrong
            outcome = Outcome.client_failure(CLIENT_ERROR, f"{type(exc).__name__}: {exc}")
        self._record(phase, request, session, outcome, t_send, intended_ns)
        return outcome.success

    async def _send(self, request: RequestSpec, timeout_s: float) -> tuple[Outcome, SessionInfo]:
        async with self._lock:
            connected = await self._connect_locked(min(timeout_s, CONNECT_TIMEOUT_S))
            client = self._client
        if not connected or client is None:
            outcome = Outcome.client_failure(NO_INSTANCE, "no service instance accepted a session")
            return outcome, SessionInfo(self.agent_id)
        session = SessionInfo(
            self.agent_id,
            client.session_id,
            client.instance_id,
            self._directory.node_of(client.instance_id),
        )
        try:
            result = await client.call(request.method, request.params, timeout=timeout_s)
        except Exception as exc:  # classified into a row below; never propagates
            outcome = classify_error(exc)
            if outcome.error_code == CONNECTION_LOST:
                await self._drop(client)
            return outcome, session
        return Outcome.ok(result), session

    def _record(
        self,
        phase: str,
        request: RequestSpec,
        session: SessionInfo,
        outcome: Outcome,
        t_send: int,
        intended: int | None,
    ) -> None:
        self._recorder.record(
            phase=phase,
            request=request,
            session=session,
            outcome=outcome,
            t_send_ns=t_send,
            t_recv_ns=max(wall_ns(), t_send, intended or 0),
            t_intended_ns=intended,
        )

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()


@dataclass(frozen=True)
class SwarmConfig:
    """Who the swarm's agents are and where they start."""

    swarm_id: str
    run_id: str
    scenario: str
    agent_ids: tuple[str, ...]
    home_instances: tuple[int, ...]
    endpoints: tuple[Endpoint, ...]
    auth_secret: str | None = None
    connect_concurrency: int = 50
    #: Each agent's rank among all agents of the run starting on its home instance (team
    #: membership); empty = the agent's index in this swarm.
    agent_slots: tuple[int, ...] = ()
    #: A clock fault (cluster.nemesis): this swarm's wall clock runs this many ns off.
    clock_skew_ns: int = 0

    def __post_init__(self) -> None:
        if len(self.agent_ids) != len(self.home_instances):
            raise ValueError("every agent needs a home instance")
        if self.agent_slots and len(self.agent_slots) != len(self.agent_ids):
            raise ValueError("agent_slots must give one slot per agent")

    def slots(self) -> tuple[int, ...]:
        """Every agent's slot (its index in the swarm when none were given)."""
        return self.agent_slots or tuple(range(len(self.agent_ids)))


@dataclass
class PhaseReport:
    """Counts of one phase in one swarm: sent must equal recorded."""

    swarm_id: str
    phase: str
    sent: int = 0
    recorded: int = 0
    failed: int = 0
    skipped: int = 0
    elapsed_s: float = 0.0
    errors: dict[str, int] = field(default_factory=dict)
    #: the swarm's own event-loop lag and CPU over the phase (`actors.loop_health`)
    loop_lag_ms_p99: float | None = None
    loop_lag_ms_max: float | None = None
    cpu_percent: float | None = None
    #: the load generator was the bottleneck: its timings measure itself, not only the service
    saturated: bool = False


class Swarm:
    """Many agents in one event loop; runs phases of a workload and records every request."""

    def __init__(self, config: SwarmConfig, connector: Connector | None = None) -> None:
        self.config = config
        _SKEW_NS[0] = config.clock_skew_ns
        self.directory = Directory(config.endpoints)
        self.recorder = Recorder(config.run_id, config.scenario)
        self._connector = connector or default_connector
        self.agents = [
            SimAgent(
                aid,
                home,
                self.directory,
                self._connector,
                self.recorder,
                _token(config, aid),
                slot=slot,
            )
            for aid, home, slot in zip(
                config.agent_ids, config.home_instances, config.slots(), strict=True
            )
        ]
        self.sent = 0
        self._in_flight: set[asyncio.Task[bool]] = set()

    async def connect_all(self, timeout_s: float = 60.0) -> dict[str, int]:
        """Open every agent's session (bounded concurrency); sessions per instance id."""
        gate = asyncio.Semaphore(self.config.connect_concurrency)

        async def one(agent: SimAgent) -> None:
            async with gate:
                await agent.connect()

        async with asyncio.timeout(timeout_s):
            await asyncio.gather(*(one(a) for a in self.agents))
        return self.sessions_by_instance()

    def sessions_by_instance(self) -> dict[str, int]:
        counts = Counter(a.connected_instance for a in self.agents if a.connected_instance)
        return dict(counts)

    def update_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        """New urls after an instance restarted; agents use them on their next connect."""
        self.directory.update(endpoints)

    async def run_phase(
        self, phase: str, workload: Workload, rate_share: float = 1.0
    ) -> PhaseReport:
        """Run `workload` to completion (bounded by its max duration); counts sent and recorded."""
        report = PhaseReport(self.config.swarm_id, phase)
        before_rows, before_sent = self.recorder.recorded, self.sent
        started = time.monotonic()
        deadline = started + workload.max_duration_s
        monitor = LoopMonitor()
        monitor.start()
        try:
            if workload.open_loop:
                report.skipped = await self._open_loop(phase, workload, rate_share, deadline)
            else:
                report.skipped = await self._closed_loop(phase, workload, deadline)
            await self._drain(workload.request_timeout_s + DRAIN_GRACE_S)
        finally:
            health = await monitor.stop()
        report.loop_lag_ms_p99 = health.lag_ms_p99
        report.loop_lag_ms_max = health.lag_ms_max
        report.cpu_percent = health.cpu_percent
        report.saturated = health.saturated
        report.elapsed_s = time.monotonic() - started
        report.sent = self.sent - before_sent
        report.recorded = self.recorder.recorded - before_rows
        return report

    async def _closed_loop(self, phase: str, workload: Workload, deadline: float) -> int:
        skipped = 0

        async def agent_loop(agent: SimAgent) -> None:
            nonlocal skipped
            rng = random.Random(f"{workload.seed}:{phase}:{agent.agent_id}")
            count = workload.requests_for(rng)
            delay = workload.start_delay(rng)
            if delay > 0:
                await asyncio.sleep(delay)  # staggered start: part of the workload's pacing
            for seq in range(count):
                if time.monotonic() >= deadline:
                    skipped += count - seq
                    return
                request = workload.request(agent.agent_id, seq, rng, self._team(workload, agent))
                self.sent += 1
                await agent.send(request, phase, workload.request_timeout_s)
                think = workload.think(rng) if seq + 1 < count else 0.0  # none after the last
                if think > 0:
                    await asyncio.sleep(
                        think
                    )  # think time is part of the workload, not a sync wait

        await asyncio.gather(*(agent_loop(a) for a in self.agents))
        return skipped

    async def _open_loop(
        self, phase: str, workload: Workload, rate_share: float, deadline: float
    ) -> int:
        assert workload.rate is not None
        offsets = open_loop_offsets(workload.rate.scaled(rate_share))
        rngs = {
            a.agent_id: random.Random(f"{workload.seed}:{phase}:{a.agent_id}") for a in self.agents
        }
        start_mono, start_wall = time.monotonic(), wall_ns()
        for k, offset in enumerate(offsets):
            due = start_mono + offset
            if due >= deadline:
                return len(offsets) - k
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # wait for the schedule, never for responses
            agent = self.agents[k % len(self.agents)]
            request = workload.request(
                agent.agent_id, k, rngs[agent.agent_id], self._team(workload, agent)
            )
            self.sent += 1
            intended = start_wall + int(offset * 1e9)
            task = asyncio.create_task(
                agent.send(request, phase, workload.request_timeout_s, intended_ns=intended)
            )
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)
        return 0

    def _team(self, workload: Workload, agent: SimAgent) -> str | None:
        return workload.team_namespace(self.config.run_id, agent.slot)

    async def _drain(self, timeout_s: float) -> None:
        if not self._in_flight:
            return
        _, pending = await asyncio.wait(set(self._in_flight), timeout=timeout_s)
        for task in pending:
            task.cancel()  # the agent records a cancelled row for it
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_GRACE_S)

    def status(self) -> dict[str, Any]:
        """Progress counters for the driver's live display."""
        return {
            "swarm_id": self.config.swarm_id,
            "agents": len(self.agents),
            "sent": self.sent,
            "recorded": self.recorder.recorded,
            "in_flight": len(self._in_flight),
            "reconnects": sum(a.reconnects for a in self.agents),
            "sessions": self.sessions_by_instance(),
        }

    def clock(self) -> int:
        """This swarm's wall clock (the driver measures its offset from it, `actors.clock`)."""
        return wall_ns()

    def drain(self) -> SwarmOutput:
        """Rows and histograms recorded since the last drain."""
        return self.recorder.drain()

    async def close(self) -> None:
        """Close every agent's session."""
        await self._drain(1.0)
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)


def _token(config: SwarmConfig, agent_id: str) -> str | None:
    if not config.auth_secret:
        return None
    from service.auth import issue_token

    return issue_token(config.auth_secret, agent_id)


async def default_connector(url: str, agent_id: str, token: str | None) -> Client:
    """Open a real WebSocket session with `service.client.WsClient`."""
    from service.client import WsClient

    return await WsClient.connect(url, agent_id, token=token)
