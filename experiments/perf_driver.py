"""Driver-side agents for the performance scenarios: exact request counts at exact concurrency.

The swarms run every agent of the topology at once. Plan sections 1.3, 3.1 and 5.1 ask for an
exact shape instead: 100 requests one after another from one agent, or 50 requests released
together at one connection pool. `DriverAgents` runs that shape on the driver with the same
`SimAgent` the swarms use, so every request becomes exactly the history row a swarm agent would
record; `drain()` hands the rows to the runner as a `facts[DRIVER_BATCHES]` batch.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import ray

from actors.agents import Directory, Endpoint, SimAgent, default_connector
from actors.recorder import Recorder
from actors.workload import MethodWeight, RequestSpec, build_request


def pattern_request(agent_id: str, seq: int, query: str, **params: Any) -> RequestSpec:
    """An `execute_pattern` request (balanced, cache on unless `params` say otherwise)."""
    return build_request(MethodWeight("execute_pattern", params=params), agent_id, seq, query)


class DriverAgents:
    """A few agents on the driver, each with its own session, recording rows like a swarm."""

    def __init__(
        self,
        run_id: str,
        scenario: str,
        endpoints: Sequence[Endpoint],
        agent_ids: Sequence[str],
        homes: Sequence[int] | None = None,
    ) -> None:
        self.recorder = Recorder(run_id, scenario)
        directory = Directory(endpoints)
        homes = list(homes) if homes is not None else list(range(len(agent_ids)))
        self.agents = [
            SimAgent(aid, home, directory, default_connector, self.recorder)
            for aid, home in zip(agent_ids, homes, strict=True)
        ]

    async def connect(self, timeout_s: float = 30.0) -> int:
        """Open every session before timing starts; returns how many opened."""
        async with asyncio.timeout(timeout_s):
            opened = await asyncio.gather(*(a.connect() for a in self.agents))
        return sum(opened)

    async def sequential(
        self, phase: str, requests: Sequence[RequestSpec], timeout_s: float, agent: int = 0
    ) -> float:
        """Send `requests` one after another from one agent; returns the wall time in s."""
        started = time.perf_counter()
        for request in requests:
            await self.agents[agent].send(request, phase, timeout_s)
        return time.perf_counter() - started

    async def burst(self, phase: str, requests: Sequence[RequestSpec], timeout_s: float) -> float:
        """Release every request at once (request i from agent i mod n); returns the wall time.

        All sends share one intended send time, so a request that queues behind others (in the
        pool, in the event loop) is charged its wait.
        """
        started = time.perf_counter()
        intended = time.time_ns()
        await asyncio.gather(
            *(
                self.agents[i % len(self.agents)].send(r, phase, timeout_s, intended_ns=intended)
                for i, r in enumerate(requests)
            )
        )
        return time.perf_counter() - started

    def drain(self) -> pa.RecordBatch:
        """Every row recorded so far (the buffer starts empty again)."""
        return self.recorder.drain().batch

    async def close(self) -> None:
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)


def instance_health(run: Any, timeout_s: float = 30.0) -> list[dict[str, Any]]:
    """Every instance's own `/health` (dependencies, pool and cache figures)."""
    return list(ray.get([a.health.remote() for a in run.instances], timeout=timeout_s))


def pool_figures(health: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pool part of each instance's health, keyed by instance id."""
    return {str(h.get("instance_id")): dict(h.get("pool") or {}) for h in health}
