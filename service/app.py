"""FastAPI app factory and uvicorn runners for the TMWS server.

`create_app` wires `/health`, the WebSocket endpoint `/ws/mcp` and the Streamable HTTP MCP
endpoint `/mcp` around one `Services`. `serve` runs it in the foreground (the CLI);
`start_in_background` runs it as a task and returns the bound port (tests, Ray actors).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import uvicorn
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from service import __version__
from service.auth import admin_policy
from service.config import Settings
from service.context import Services
from service.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from service.sessions import SessionRegistry
from service.transport.mcp_http import MCP_PATH, mcp_http_app
from service.transport.security import install_log_redaction
from service.transport.ws import WS_PATH, add_websocket_endpoint, uvicorn_ws_options

log = logging.getLogger(__name__)

DEFAULT_STARTUP_TIMEOUT_S = 120.0
#: Seconds uvicorn waits for open connections to finish on shutdown before dropping them.
GRACEFUL_SHUTDOWN_S = 5


def auth_mode(settings: Settings) -> str:
    return "enabled" if settings.auth_enabled else "disabled (open)"


def create_app(settings: Settings, *, services: Services | None = None) -> FastAPI:
    """The TMWS ASGI app; with `services` given it is used as is, else built in the lifespan."""

    def get_services() -> Services:
        return app.state.services

    mcp_asgi, mcp_lifespan = mcp_http_app(get_services)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned = services is None
        if owned:
            from service import bootstrap  # lazy: pulls in the database, cache and model

            svc = await bootstrap.start_services(settings)
        else:
            svc = services
        if svc.sessions is None:
            svc.sessions = SessionRegistry.from_limits(svc.settings.limits)
        app.state.services = svc
        if not svc.settings.auth_enabled:
            log.warning(
                "TMWS %s: authentication DISABLED (no TMWS_AUTH_SECRET): open server",
                svc.instance_id,
            )
        try:
            async with mcp_lifespan():
                yield
        finally:
            if owned:
                await bootstrap.stop_services(svc)

    app = FastAPI(title="TMWS", version=__version__, lifespan=lifespan)
    if services is not None:
        app.state.services = services

    @app.get("/health")
    async def health(request: Request) -> JSONResponse:
        services = request.app.state.services
        body = await _health_body(services)
        body["admin"] = admin_policy(services.settings)
        return JSONResponse(body)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        """Prometheus text: requests, stage latencies, cache tiers, pool, breakers, encoder."""
        registry = request.app.state.services.metrics
        return Response(registry.render(), media_type=METRICS_CONTENT_TYPE)

    add_websocket_endpoint(app, WS_PATH)
    # A plain route, not a Mount: a Mount would redirect "/mcp" to "/mcp/".
    app.add_route(MCP_PATH, mcp_asgi, include_in_schema=False)
    return app


async def _health_body(services: Services) -> dict[str, Any]:
    """Dependency status from bootstrap when the full stack is up, else the transport view."""
    if services.db is not None:
        try:
            from service import bootstrap
        except ImportError:
            bootstrap = None  # type: ignore[assignment]
        if bootstrap is not None:
            try:
                return await bootstrap.health(services)
            except Exception as exc:  # health reports failures as data, never as a 500
                log.exception("health check failed")
                return {
                    "status": "degraded",
                    "instance_id": services.instance_id,
                    "error": str(exc),
                }
    return {
        "status": "ok",
        "instance_id": services.instance_id,
        "server_version": __version__,
        "uptime_s": round(time.time() - services.started_at, 1),
        "auth": auth_mode(services.settings),
        "sessions": services.sessions.stats() if services.sessions is not None else {},
    }


def uvicorn_config(
    app: FastAPI, settings: Settings, host: str, port: int, *, log_level: str = "info"
) -> uvicorn.Config:
    """uvicorn settings for the app: WebSocket limits and heartbeat from `settings`.

    Creating the config sets up uvicorn's logging; the token-redacting filter goes on after.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        **uvicorn_ws_options(settings),
    )
    install_log_redaction()
    return config


class _Server(uvicorn.Server):
    """uvicorn.Server that reports a finished startup through an event."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self.started_event.set()


class _BackgroundServer(_Server):
    """A server embedded in a host (pytest, a Ray actor) that owns signal handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


async def start_in_background(
    app: FastAPI,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    settings: Settings | None = None,
    log_level: str = "warning",
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S,
) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Run `app` under uvicorn as a task; return (server, task, bound port) once it is serving."""
    if settings is None:
        try:
            settings = app.state.services.settings
        except AttributeError:  # services not built yet: they come from the lifespan
            settings = Settings()
    config = uvicorn_config(app, settings, host, port, log_level=log_level)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    server = _BackgroundServer(config)

    async def run() -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit as exc:  # uvicorn exits on a failed startup; keep it inside this task
            raise RuntimeError(f"server failed to start (exit code {exc.code})") from None
        finally:
            sock.close()

    task = asyncio.create_task(run(), name=f"uvicorn-{host}:{bound_port}")
    started = asyncio.create_task(server.started_event.wait())
    try:
        async with asyncio.timeout(startup_timeout_s):
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
    except TimeoutError:
        await stop_background(server, task)
        raise
    finally:
        started.cancel()
    if not server.started_event.is_set():
        await task  # raises the startup failure
        raise RuntimeError("server stopped during startup")
    return server, task, bound_port


async def stop_background(
    server: uvicorn.Server, task: asyncio.Task[None], timeout_s: float = 30.0
) -> None:
    """Ask a background server to exit and wait for it; force-cancel past `timeout_s`."""
    server.should_exit = True
    try:
        async with asyncio.timeout(timeout_s):
            await asyncio.gather(task, return_exceptions=True)
    except TimeoutError:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def serve(settings: Settings, services: Services | None = None) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (what `tmws serve` runs)."""
    app = create_app(settings, services=services)
    server = _Server(uvicorn_config(app, settings, settings.host, settings.port))
    watcher = asyncio.create_task(_announce(server, settings))
    try:
        await server.serve()
    finally:
        watcher.cancel()


async def _announce(server: _Server, settings: Settings) -> None:
    """Print the listening line once uvicorn is up, with the real port (also when port is 0)."""
    await server.started_event.wait()
    port = settings.port
    with contextlib.suppress(Exception):
        port = server.servers[0].sockets[0].getsockname()[1]
    auth = "enabled" if settings.auth_enabled else "disabled — open"
    line = (
        f"TMWS {settings.instance_id} listening on http://{settings.host}:{port} "
        f"(ws: ws://{settings.host}:{port}{WS_PATH}, mcp: http://{settings.host}:{port}{MCP_PATH}; "
        f"auth: {auth})"
    )
    log.info(line)
    print(line, flush=True)


def loop_factory(settings: Settings) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop when wanted and installed, else None (asyncio's own)."""
    if not settings.uvloop:
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_server(settings: Settings) -> None:
    """Blocking entry point: serve until interrupted."""
    # uvicorn re-raises the SIGINT it handled gracefully; the shutdown already happened.
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory(settings)) as runner,
    ):
        runner.run(serve(settings))
