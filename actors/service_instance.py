"""`ServiceInstance`: the real TMWS server (same app as `tmws serve`) running inside a Ray actor.

`ServiceHost` is the Ray-free part: it builds `Settings` from a `TMWS_*` mapping, runs
`service.app.create_app` under uvicorn in the current event loop on `host` and an OS-given port,
and answers health, stats and stop. The actor shell starts it lazily on the first call, so after
Ray restarts a killed instance (`max_restarts`) the next call brings the server back on a new port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import psutil
import ray

from actors.ray_mirror import PrometheusMirror, registry_of
from service.config import Settings

if TYPE_CHECKING:
    from service.context import Services

log = logging.getLogger(__name__)

DEFAULT_MAX_RESTARTS = 3
WS_PATH = "/ws/mcp"


@dataclass(frozen=True)
class InstanceInfo:
    """Where a started instance listens and what it is."""

    instance_id: str
    url: str
    ws_url: str
    host: str
    port: int
    node_id: str | None
    pid: int
    startup_s: float
    restarts: int = 0


class ServiceHost:
    """Runs one TMWS server in the current event loop (Ray-free; tests use it directly)."""

    def __init__(
        self, env: Mapping[str, str], host: str = "127.0.0.1", node_id: str | None = None
    ) -> None:
        self.settings = Settings.from_env({**env, "TMWS_HOST": host, "TMWS_PORT": "0"})
        self.host = host
        self.node_id = node_id
        self.restarts = 0
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None
        self._info: InstanceInfo | None = None
        self._lock: asyncio.Lock | None = None
        self._process = psutil.Process(os.getpid())
        self._app: Any = None
        self._process.cpu_percent(None)  # prime: the next call reports usage since now

    @property
    def app(self) -> Any:
        """The running ASGI app (None before `start`)."""
        return self._app

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> InstanceInfo:
        """Start the server once (later calls return the same info)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if self._info is not None and self.running:
                return self._info
            from service.app import create_app, start_in_background

            started = time.monotonic()
            app = create_app(self.settings)
            self._app = app
            self._server, self._task, port = await start_in_background(
                app, self.host, 0, settings=self.settings
            )
            base = f"http://{self.host}:{port}"
            self._info = InstanceInfo(
                instance_id=self.settings.instance_id,
                url=base,
                ws_url=f"ws://{self.host}:{port}{WS_PATH}",
                host=self.host,
                port=port,
                node_id=self.node_id,
                pid=os.getpid(),
                startup_s=time.monotonic() - started,
                restarts=self.restarts,
            )
            return self._info

    async def health(self, timeout_s: float = 5.0) -> dict[str, Any]:
        """The server's own `/health`, fetched over HTTP like any client would."""
        info = await self.start()
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(f"{info.url}/health")
            response.raise_for_status()
            return dict(response.json())

    def stats(self) -> dict[str, Any]:
        """Process figures (CPU% of the whole machine since the last call, RSS, threads) and the
        database pool's in-use count and worst acquire wait, read from the running server."""
        cores = psutil.cpu_count() or 1
        pool = self._pool_stats()
        with self._process.oneshot():
            return {
                "pool_in_use": pool.get("in_use"),
                "pool_wait_ms": pool.get("acquire_wait_ms_max"),
                "instance_id": self.settings.instance_id,
                "node_id": self.node_id,
                "pid": self._process.pid,
                "cpu_percent": self._process.cpu_percent(None) / cores,
                "rss_bytes": self._process.memory_info().rss,
                "threads": self._process.num_threads(),
                "running": self.running,
                "t_ns": time.time_ns(),
            }

    def _pool_stats(self) -> dict[str, Any]:
        try:
            services: Services = self._app.state.services
        except AttributeError:  # not started yet, or its lifespan has not built the services
            return {}
        return services.db.pool_stats() if services.db is not None else {}

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Graceful: uvicorn closes connections and the lifespan closes pools and caches."""
        if self._server is None or self._task is None:
            return
        from service.app import stop_background

        await stop_background(self._server, self._task, timeout_s)
        self._server = self._task = None
        self._info = None


@ray.remote(max_restarts=DEFAULT_MAX_RESTARTS, max_task_retries=0)
class ServiceInstance:
    """Ray shell around `ServiceHost`, bound to its node's IP (127.0.0.1 on loopback clusters)."""

    def __init__(self, env: Mapping[str, str]) -> None:
        context = ray.get_runtime_context()
        host = ray.util.get_node_ip_address()
        self._host = ServiceHost(env, host=host, node_id=context.get_node_id())
        with warnings.catch_warnings():
            # Ray's own property reads its deprecated `actor_id` internally; nothing of ours to fix.
            warnings.simplefilter("ignore", DeprecationWarning)
            reconstructed = context.was_current_actor_reconstructed
        self._host.restarts = 1 if reconstructed else 0
        # The instance's /metrics as Ray gauges, refreshed whenever the driver samples stats.
        self._mirror = PrometheusMirror(self._host.settings.instance_id)

    async def start(self) -> InstanceInfo:
        return await self._host.start()

    async def info(self) -> InstanceInfo:
        return await self._host.start()

    async def health(self) -> dict[str, Any]:
        return await self._host.health()

    async def stats(self) -> dict[str, Any]:
        await self._host.start()
        stats = self._host.stats()
        try:
            stats["ray_metrics_set"] = self._mirror.publish(registry_of(self._host.app))
        except Exception:  # the dashboard's copy must never cost the run its resource samples
            log.exception("ray metrics: mirroring %s failed", self._host.settings.instance_id)
        return stats

    async def stop(self) -> None:
        await self._host.stop()
