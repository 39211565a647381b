"""`AgentSwarm`: a thin async Ray actor around `actors.agents.Swarm` (hundreds of agents, one process)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ray

from actors.agents import Endpoint, PhaseReport, Swarm, SwarmConfig
from actors.ray_metrics import SwarmMetrics
from actors.recorder import SwarmOutput
from actors.workload import Workload

#: Samples one status poll publishes at most (~24 µs each, on the agents' event loop: a poll
#: must not stall them for more than ~25 ms); the rest wait for the next poll or the phase end.
PUBLISH_PER_POLL = 1000


@ray.remote(max_restarts=0)
class AgentSwarm:
    """Ray shell: every method forwards to the Ray-free `Swarm`."""

    def __init__(self, config: SwarmConfig) -> None:
        self._swarm = Swarm(config)
        self._node_id = ray.get_runtime_context().get_node_id()
        # Request counts and latencies for the Ray dashboard, published in batches.
        self._metrics = SwarmMetrics(config.swarm_id)
        self._swarm.recorder.keep_samples()

    def node_id(self) -> str:
        return self._node_id

    async def connect_all(self, timeout_s: float = 60.0) -> dict[str, int]:
        return await self._swarm.connect_all(timeout_s)

    def update_endpoints(self, endpoints: Sequence[Endpoint]) -> None:
        self._swarm.update_endpoints(endpoints)

    async def run_phase(
        self, phase: str, workload: Workload | Mapping[str, Any], rate_share: float = 1.0
    ) -> PhaseReport:
        if not isinstance(workload, Workload):
            workload = Workload.from_dict(workload)
        try:
            return await self._swarm.run_phase(phase, workload, rate_share)
        finally:
            self._publish()

    def status(self) -> dict[str, Any]:
        # The driver polls this during every phase: the metrics stay current.
        self._publish(PUBLISH_PER_POLL)
        return {
            **self._swarm.status(),
            "node_id": self._node_id,
            "metrics_published": self._metrics.published,
        }

    def _publish(self, limit: int | None = None) -> None:
        self._metrics.publish(self._swarm.recorder.take_samples(limit))

    def clock(self) -> int:
        return self._swarm.clock()

    def drain(self) -> SwarmOutput:
        return self._swarm.drain()

    async def close(self) -> None:
        await self._swarm.close()
