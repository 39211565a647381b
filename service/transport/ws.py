"""WebSocket transport: `/ws/mcp?agent_id=…` frames in, JSON-RPC replies out.

This module only turns frames into messages and enforces connection-level limits (identity,
connections per agent, frame size, request rate, idleness); everything about JSON-RPC lives
in `service.jsonrpc`. Requests on one socket run concurrently, so replies may come back out of
order: ids match them up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from fastapi import FastAPI
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from service import __version__
from service.auth import AgentClaims, bearer_token, verify_claims
from service.config import Settings
from service.errors import (
    ConnectionLimit,
    FrameTooLarge,
    ParseError,
    RateLimited,
    TMWSError,
    Unauthorized,
)
from service.jsonrpc import Dispatcher, encode, error_response, parse
from service.services import Services
from service.sessions import Session, TokenBucket, check_agent_id
from service.tools.registry import CallContext

log = logging.getLogger(__name__)

WS_PATH = "/ws/mcp"
#: Requests one socket may have running at once; beyond it the reader stops reading (backpressure).
MAX_IN_FLIGHT_PER_CONNECTION = 64
#: uvicorn drops frames above max_frame_bytes * this factor with close 1009 before they reach the
#: app; frames between the two limits are answered with a -32003 frame_too_large error instead.
PROTOCOL_MAX_SIZE_FACTOR = 4
#: RFC 6455: a close reason is at most 123 bytes of UTF-8.
_MAX_CLOSE_REASON_BYTES = 123

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY_VIOLATION = 1008
CLOSE_TRY_AGAIN_LATER = 1013


def server_info() -> dict[str, Any]:
    """`serverInfo` for MCP initialize."""
    return {"name": "tmws", "version": __version__}


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """WebSocket keyword arguments for `uvicorn.Config` matching the service's limits."""
    limits = settings.limits
    heartbeat = limits.heartbeat_s or None  # 0 switches protocol pings off
    return {
        "ws": "websockets-sansio",
        "ws_max_size": limits.max_frame_bytes * PROTOCOL_MAX_SIZE_FACTOR,
        "ws_ping_interval": heartbeat,
        "ws_ping_timeout": heartbeat,
    }


def add_websocket_endpoint(app: FastAPI, path: str = WS_PATH) -> None:
    """Serve JSON-RPC/MCP at `path`, using `app.state.services` at connect time."""

    @app.websocket(path)
    async def mcp_websocket(websocket: WebSocket) -> None:
        services: Services = app.state.services
        await WsConnection(websocket, services).run()


def _truncate_reason(reason: str) -> str:
    encoded = reason.encode("utf-8")
    if len(encoded) <= _MAX_CLOSE_REASON_BYTES:
        return reason
    return encoded[: _MAX_CLOSE_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."


class WsConnection:
    """One accepted socket: identity check, session, the read loop and its request tasks."""

    def __init__(self, websocket: WebSocket, services: Services) -> None:
        self.ws = websocket
        self.services = services
        self.limits = services.settings.limits
        self.dispatcher = Dispatcher(services.tools, server_info())
        self._send_lock = asyncio.Lock()
        self._in_flight = asyncio.Semaphore(MAX_IN_FLIGHT_PER_CONNECTION)
        self._tasks: set[asyncio.Task[None]] = set()
        self._bucket = TokenBucket(self.limits.rate_per_s, max(1, self.limits.rate_burst))

    async def run(self) -> None:
        """Accept, admit or refuse, then serve until either side closes."""
        # Accept first, then refuse with a close code + reason: clients can read those, while a
        # refusal before accept is only an HTTP 403 without a reason.
        await self.ws.accept()
        try:
            claims = self._identify()
        except Unauthorized as exc:
            await self._close(CLOSE_POLICY_VIOLATION, f"unauthorized: {exc.message}")
            return
        except TMWSError as exc:
            await self._close(CLOSE_POLICY_VIOLATION, exc.message)
            return
        try:
            session = self.services.sessions.open(claims.agent_id)
        except ConnectionLimit as exc:
            await self._close(CLOSE_TRY_AGAIN_LATER, exc.message)
            return
        if self.services.settings.auth_enabled:
            session.extra["teams"] = list(claims.teams)
        try:
            await self._serve(session)
        finally:
            self.services.sessions.close(session)

    def _identify(self) -> AgentClaims:
        """The connecting agent, checked against its token when auth is on.

        Without auth `teams` is left unset: an open server does not enforce team membership.
        """
        agent_id = check_agent_id(self.ws.query_params.get("agent_id"))
        settings = self.services.settings
        if not settings.auth_enabled:
            return AgentClaims(agent_id)
        token = self.ws.query_params.get("token") or bearer_token(
            self.ws.headers.get("authorization")
        )
        return verify_claims(settings.auth_secret or "", token, agent_id)

    async def _serve(self, session: Session) -> None:
        ctx = CallContext(
            agent_id=session.agent_id,
            session_id=session.session_id,
            instance_id=self.services.instance_id,
            services=self.services,
            extra=session.extra,
        )
        welcome = {
            "jsonrpc": "2.0",
            "method": "welcome",
            "params": {
                "session_id": session.session_id,
                "agent_id": session.agent_id,
                "instance_id": self.services.instance_id,
                "server_version": __version__,
            },
        }
        if not await self._send(encode(welcome)):
            return
        client_gone = True
        try:
            client_gone = await self._read_loop(session, ctx)
        finally:
            await self._finish(cancel=client_gone)

    async def _read_loop(self, session: Session, ctx: CallContext) -> bool:
        """Read frames until the client leaves (True) or the server closes for idleness (False)."""
        while True:
            message = await self._receive_unless_idle()
            if message is None:
                await self._close(
                    CLOSE_GOING_AWAY, f"idle for {self.limits.idle_timeout_s:g}s without a message"
                )
                return False
            if message["type"] == "websocket.disconnect":
                return True
            session.touch()
            raw = message.get("text")
            if raw is None:
                raw = message.get("bytes") or b""
            await self._accept_frame(raw, ctx)

    async def _receive_unless_idle(self) -> dict[str, Any] | None:
        """The next ASGI message, or None once idle for the configured time with nothing running."""
        idle = self.limits.idle_timeout_s
        while True:
            if not idle:
                return await self.ws.receive()
            try:
                async with asyncio.timeout(idle):
                    return await self.ws.receive()
            except TimeoutError:
                if not self._tasks:
                    return None
                # A long request is still running: the connection is busy, not idle.

    async def _accept_frame(self, raw: str | bytes, ctx: CallContext) -> None:
        """Check limits, then hand the frame to a request task (or answer the refusal)."""
        limit = self.limits.max_frame_bytes
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
        if size > limit:
            exc = FrameTooLarge(
                f"frame of {size} bytes exceeds the limit of {limit} bytes",
                {"size": size, "limit": limit},
            )
            await self._send(encode(error_response(None, exc)))
            return
        try:
            obj = parse(raw)
        except ParseError as exc:
            await self._send(encode(error_response(None, exc)))
            return
        if not self._bucket.try_take():
            exc = RateLimited(
                f"rate limit of {self.limits.rate_per_s:g} requests/s "
                f"(burst {self.limits.rate_burst}) exceeded",
                {"retry_after_s": round(self._bucket.retry_after_s(), 4)},
            )
            reply = self.dispatcher.reject(obj, exc)
            if reply is not None:
                await self._send(encode(reply))
            return
        await self._in_flight.acquire()
        task = asyncio.create_task(self._process(obj, ctx))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._in_flight.release()

    async def _process(self, obj: Any, ctx: CallContext) -> None:
        try:
            reply = await self.dispatcher.handle_message(obj, ctx)
            if reply is not None:
                await self._send(encode(reply))
        except Exception:  # top-level handler of the task: the dispatcher should never raise
            log.exception("request task failed on session %s", ctx.session_id)

    async def _send(self, text: str) -> bool:
        """Send one frame; False if the client has gone."""
        async with self._send_lock:
            try:
                await self.ws.send_text(text)
                return True
            except (WebSocketDisconnect, WebSocketDisconnected, OSError):
                return False

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, OSError):
                await self.ws.close(code=code, reason=_truncate_reason(reason))

    async def _finish(self, *, cancel: bool) -> None:
        """Cancel (client gone) or drain (server closing) the request tasks still running."""
        tasks = list(self._tasks)
        if not tasks:
            return
        if cancel:
            for task in tasks:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
