"""WebSocket transport: `/ws/mcp?agent_id=…` frames in, JSON-RPC replies out.

This module only turns frames into messages and enforces connection-level limits (Origin and
Host, identity, connections per agent and per server, frame size, request rate per connection and
per agent, requests in flight, idleness); everything about JSON-RPC lives in `service.jsonrpc`.
Requests on one socket run concurrently, so replies may come back out of order: ids match them
up. Each request of a batch is charged to the rate limits and holds an in-flight slot like a
single request; the batch is answered in one frame once all of them are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any

from fastapi import FastAPI
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from service import __version__
from service.auth import AgentClaims, bearer_token, is_admin, redact, verify_claims
from service.config import Settings
from service.context import CallContext, Services
from service.errors import (
    ConnectionLimit,
    FrameTooLarge,
    InvalidText,
    RateLimited,
    TMWSError,
    Unauthorized,
)
from service.jsonrpc import Dispatcher, JsonRpcLimits, encode, error_response
from service.mcp_methods import McpMethods
from service.metrics import ServiceMetrics
from service.sessions import Session, TokenBucket, check_agent_id
from service.timings import mark_received
from service.transport.security import check_request

log = logging.getLogger(__name__)
#: One line per connection attempt saying what really happened (uvicorn's own "[accepted]" line
#: is dropped by the log filter: it would also show for sockets accepted only to be refused).
access_log = logging.getLogger("tmws.access")

WS_PATH = "/ws/mcp"
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


def mcp_dispatcher(services: Services, *, metrics: ServiceMetrics | None = None) -> Dispatcher:
    """This server's JSON-RPC dispatcher: the MCP methods and every tool, under its limits;
    given `metrics`, it times reply serialisation there (the socket does)."""
    table = McpMethods(services.tools, server_info()).handler_table()
    limits = JsonRpcLimits.from_settings(services.settings.limits)
    return Dispatcher(table, limits, metrics=metrics)


def uvicorn_ws_options(settings: Settings) -> dict[str, Any]:
    """WebSocket keyword arguments for `uvicorn.Config` matching the service's limits."""
    limits = settings.limits
    heartbeat = limits.heartbeat_s or None  # 0 switches protocol pings off
    return {
        "ws": "websockets-sansio",
        "ws_max_size": limits.max_frame_bytes * PROTOCOL_MAX_SIZE_FACTOR,
        "ws_ping_interval": heartbeat,
        "ws_ping_timeout": heartbeat,
        "ws_per_message_deflate": limits.ws_compression,
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
        self.dispatcher = mcp_dispatcher(services, metrics=services.metrics)
        self._send_lock = asyncio.Lock()
        #: Requests running at once; beyond it the reader stops reading (backpressure).
        self._in_flight = asyncio.Semaphore(self.limits.max_in_flight)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._bucket = TokenBucket(self.limits.rate_per_s, max(1, self.limits.rate_burst))

    async def run(self) -> None:
        """Check Origin/Host, admit or refuse, then serve until either side closes."""
        refusal = check_request(self.ws.headers, self.services.settings)
        if refusal is not None:
            # Before accept: a browser page of a foreign origin never gets a socket (HTTP 403).
            self._log_access(f"refused (403 {refusal.reason}: {refusal.message})")
            await self._deny(refusal)
            return
        # Accept first, then refuse with a close code + reason: clients can read those, while a
        # refusal before accept is only an HTTP status.
        await self.ws.accept()
        try:
            claims = self._identify()
        except Unauthorized as exc:
            await self._refuse(CLOSE_POLICY_VIOLATION, f"unauthorized: {exc.message}")
            return
        except TMWSError as exc:
            await self._refuse(CLOSE_POLICY_VIOLATION, exc.message)
            return
        try:
            session = self.services.sessions.open(claims.agent_id)
        except ConnectionLimit as exc:
            await self._refuse(CLOSE_TRY_AGAIN_LATER, exc.message)
            return
        settings = self.services.settings
        if settings.auth_enabled:
            session.extra["teams"] = list(claims.teams)
        session.extra["admin"] = is_admin(settings, claims.agent_id, claimed=claims.admin)
        self._log_access(f"accepted agent={claims.agent_id} session={session.session_id}")
        try:
            await self._serve(session)
        finally:
            self.services.sessions.close(session)

    def _log_access(self, outcome: str) -> None:
        client = self.ws.client
        where = f"{client.host}:{client.port}" if client else "-"
        query = self.ws.scope.get("query_string", b"").decode("latin-1")
        path = redact(f"{self.ws.scope.get('path', WS_PATH)}{'?' + query if query else ''}")
        access_log.info('%s - "WebSocket %s" %s', where, path, outcome)

    async def _deny(self, exc: TMWSError) -> None:
        """Refuse the handshake with HTTP 403 (and a JSON-RPC error body where supported)."""
        with contextlib.suppress(WebSocketDisconnect, WebSocketDisconnected, OSError):
            if "websocket.http.response" in self.ws.scope.get("extensions", {}):
                body = error_response(None, exc)
                await self.ws.send_denial_response(JSONResponse(body, status_code=403))
            else:
                await self.ws.close(code=CLOSE_POLICY_VIOLATION)  # before accept: HTTP 403

    async def _refuse(self, code: int, reason: str) -> None:
        self._log_access(f"refused (close {code}: {reason})")
        await self._close(code, reason)

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
        """Check limits, then hand the frame's requests to tasks (or answer the refusal)."""
        mark_received()  # the requests' `queue` stage starts here (copied into their tasks)
        limit = self.limits.max_frame_bytes
        if isinstance(raw, bytes) or raw.isascii():
            size = len(raw)  # ASCII: one byte a character, no need to encode the frame to count
        else:
            size = len(raw.encode("utf-8", "surrogatepass"))
        if size > limit:
            exc = FrameTooLarge(
                f"frame of {size} bytes exceeds the limit of {limit} bytes",
                {"size": size, "limit": limit},
            )
            await self._send(encode(error_response(None, exc)))
            return
        try:
            obj = self.dispatcher.parse(raw)
            self.dispatcher.check_batch(obj)
        except TMWSError as exc:  # -32700 (not JSON, too deep) or -32600 (empty or long batch)
            await self._send(encode(error_response(None, exc)))
            return
        if isinstance(obj, list):
            await self._start_batch(obj, ctx)
            return
        refusal = self._charge(ctx.agent_id)
        if refusal is not None:
            reply = self.dispatcher.reject_one(obj, refusal)
            if reply is not None:
                await self._send(encode(reply))
            return
        await self._in_flight.acquire()
        self._spawn(self._single(obj, ctx), holds_slot=True)

    async def _start_batch(self, batch: list[Any], ctx: CallContext) -> None:
        """Charge and start each request of a batch; one task answers the whole batch."""
        pending: list[asyncio.Task[Any] | dict[str, Any] | None] = []
        for msg in batch:
            refusal = self._charge(ctx.agent_id)
            if refusal is not None:
                pending.append(self.dispatcher.reject_one(msg, refusal))
                continue
            await self._in_flight.acquire()
            pending.append(self._spawn(self.dispatcher.handle_one(msg, ctx), holds_slot=True))
        self._spawn(self._answer_batch(batch, pending, ctx), holds_slot=False)

    def _charge(self, agent_id: str) -> RateLimited | None:
        """One request against this socket's bucket, then the agent's (all its sockets, /mcp)."""
        if not self._bucket.try_take():
            return RateLimited(
                f"rate limit of {self.limits.rate_per_s:g} requests/s "
                f"(burst {self.limits.rate_burst}) exceeded",
                {"scope": "connection", "retry_after_s": round(self._bucket.retry_after_s(), 4)},
            )
        sessions = self.services.sessions
        return sessions.rates.take(agent_id) if sessions is not None else None

    def _spawn(self, work: Awaitable[Any], *, holds_slot: bool) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done if holds_slot else self._tasks.discard)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._in_flight.release()

    async def _single(self, obj: Any, ctx: CallContext) -> None:
        try:
            reply = await self.dispatcher.handle_one(obj, ctx)
            if reply is not None:
                await self._send(self.dispatcher.encode_reply(obj, reply)[0])
        except Exception:  # top-level handler of the task: the dispatcher should never raise
            log.exception("request task failed on session %s", ctx.session_id)

    async def _answer_batch(
        self,
        batch: list[Any],
        pending: list[asyncio.Task[Any] | dict[str, Any] | None],
        ctx: CallContext,
    ) -> None:
        try:
            replies = [await p if isinstance(p, asyncio.Task) else p for p in pending]
            text = self.dispatcher.encode_batch(list(zip(batch, replies, strict=True)))
            if text is not None:
                await self._send(text)
        except Exception:  # top-level handler of the task, as in _single
            log.exception("batch task failed on session %s", ctx.session_id)

    async def _send(self, text: str) -> bool:
        """Send one frame; False if the client has gone."""
        async with self._send_lock:
            try:
                await self.ws.send_text(text)
                return True
            except (WebSocketDisconnect, WebSocketDisconnected, OSError):
                return False
            except UnicodeEncodeError:
                # Replies are checked before they get here; this is the last line of defence.
                log.error("unencodable frame not sent: %s", text[:200].encode("utf-8", "replace"))
                error = InvalidText("the reply could not be encoded as UTF-8", field="params")
                await self.ws.send_text(encode(error_response(None, error)))
                return True

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
