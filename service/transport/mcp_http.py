"""MCP Streamable HTTP transport at `/mcp`, built on the official `mcp` SDK's server side.

The SDK speaks the protocol (handshake, discovery, SSE/JSON framing); tool listing and calls go
through the same `Dispatcher` as the WebSocket endpoint, so both transports answer identically.
Stateless mode: every HTTP request is served on its own, nothing is kept between them.

Before the SDK sees a request, the gate here checks, in order: Origin and Host (403, DNS
rebinding), identity (401), body size (413, -32003 frame_too_large), strict JSON with the same
parser as the WebSocket endpoint (400, -32700: no NaN/Infinity, bounded nesting), no batches
(400, -32600), the agent's rate limit shared with its sockets (429, -32003 rate_limited) and the
server-wide bound on `/mcp` requests in flight (503, -32003 busy).

Identity: with auth on, `Authorization: Bearer <token>` is required and its subject is the
agent; anything else is answered 401 before the SDK (or any tool) sees the request. Without
auth the agent comes from the `X-TMWS-Agent-Id` header, default `mcp-http`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from service import __version__
from service.auth import bearer_token, is_admin, verify_claims
from service.context import CallContext, Services
from service.errors import Busy, FrameTooLarge, InvalidRequest, TMWSError, Unauthorized
from service.jsonrpc import error_response, is_notification
from service.sessions import check_agent_id
from service.transport.security import check_request
from service.transport.ws import mcp_dispatcher

MCP_PATH = "/mcp"
AGENT_HEADER = "x-tmws-agent-id"
DEFAULT_HTTP_AGENT = "mcp-http"
#: Where the authenticated agent id travels from the ASGI wrapper to the SDK handlers.
_AGENT_SCOPE_KEY = "tmws.agent_id"
#: Team namespaces the token grants; absent on an open server (membership not enforced there).
_TEAMS_SCOPE_KEY = "tmws.teams"
_ADMIN_SCOPE_KEY = "tmws.admin"

GetServices = Callable[[], Services]


def mcp_http_app(
    get_services: GetServices,
) -> tuple[Callable[[Scope, Receive, Send], Any], Callable[[], AbstractAsyncContextManager[None]]]:
    """(ASGI app to route at /mcp, lifespan context manager the host app must enter)."""
    server: Server[Any] = Server(
        "tmws",
        version=__version__,
        on_list_tools=_list_tools_handler(get_services),
        on_call_tool=_call_tool_handler(get_services),
    )
    manager = StreamableHTTPSessionManager(app=server, stateless=True, json_response=True)
    return _IdentityGate(manager.handle_request, get_services), manager.run


class _IdentityGate:
    """ASGI wrapper: decide whether and as whom a request may reach the SDK (see module doc)."""

    def __init__(self, inner: Callable[[Scope, Receive, Send], Any], get_services: GetServices):
        self._inner = inner
        self._get_services = get_services
        self._active = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        services = self._get_services()
        settings = services.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = check_request(headers, settings)
        if refusal is not None:
            await _answer(scope, receive, send, 403, refusal)
            return
        try:
            agent_id, teams, admin = self._identify(headers)
        except TMWSError as exc:
            status = 401 if isinstance(exc, Unauthorized) else 400
            extra = {"WWW-Authenticate": "Bearer"} if status == 401 else None
            await _answer(scope, receive, send, status, exc, extra)
            return
        if scope["method"] == "POST":
            checked = await self._check_body(scope, receive, send, services, agent_id, headers)
            if checked is None:
                return
            receive = checked
        limit = settings.limits.http_max_in_flight
        if self._active >= limit:
            busy = Busy(f"{self._active} /mcp requests in flight (limit {limit}); retry shortly")
            await _answer(scope, receive, send, 503, busy, {"Retry-After": "1"})
            return
        self._active += 1
        try:
            await self._inner(
                {
                    **scope,
                    _AGENT_SCOPE_KEY: agent_id,
                    _TEAMS_SCOPE_KEY: teams,
                    _ADMIN_SCOPE_KEY: admin,
                },
                receive,
                send,
            )
        finally:
            self._active -= 1

    async def _check_body(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        services: Services,
        agent_id: str,
        headers: dict[str, str],
    ) -> Receive | None:
        """Read and check the body; answer the refusal and return None, or a replaying receive."""
        limits = services.settings.limits
        body = await _read_body(receive, limits.max_frame_bytes, headers.get("content-length"))
        if body is None:
            too_big = FrameTooLarge(
                f"request body exceeds the limit of {limits.max_frame_bytes} bytes",
                {"limit": limits.max_frame_bytes},
            )
            await _answer(scope, receive, send, 413, too_big)
            return None
        dispatcher = mcp_dispatcher(services)
        try:
            obj = dispatcher.parse(body)
            dispatcher.check_batch(obj)
            if isinstance(obj, list):
                # MCP 2025-06-18 removed JSON-RPC batching from Streamable HTTP and the SDK
                # answers arrays with a validation error; say what is wrong instead.
                raise InvalidRequest(
                    f"batches are not supported on {MCP_PATH} (MCP 2025-06-18 removed them); "
                    f"send one request per POST or use the WebSocket endpoint"
                )
        except TMWSError as exc:
            await _answer(scope, receive, send, 400, exc)
            return None
        limited = services.sessions.rates.take(agent_id) if services.sessions else None
        if limited is not None:
            retry = str(max(1, round(limited.data.get("retry_after_s", 1))))
            await _answer(scope, receive, send, 429, limited, {"Retry-After": retry})
            return None
        return _replay(body, receive)

    def _identify(self, headers: dict[str, str]) -> tuple[str, list[str] | None, bool]:
        settings = self._get_services().settings
        if settings.auth_enabled:
            token = bearer_token(headers.get("authorization"))
            claims = verify_claims(settings.auth_secret or "", token, None)
            agent_id = check_agent_id(claims.agent_id)
            return agent_id, list(claims.teams), is_admin(settings, agent_id, claimed=claims.admin)
        agent_id = check_agent_id(headers.get(AGENT_HEADER) or DEFAULT_HTTP_AGENT)
        return agent_id, None, is_admin(settings, agent_id)


async def _answer(
    scope: Scope,
    receive: Receive,
    send: Send,
    status: int,
    exc: TMWSError,
    headers: dict[str, str] | None = None,
) -> None:
    response = JSONResponse(error_response(None, exc), status_code=status, headers=headers)
    await response(scope, receive, send)


async def _read_body(receive: Receive, limit: int, declared: str | None) -> bytes | None:
    """The whole request body, or None once it is known to exceed `limit` bytes."""
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break  # the client went away; the SDK will see an empty body and answer it
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the already-read body to the SDK, then defers to the real one."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _call_context(ctx: ServerRequestContext[Any, Any], services: Services) -> CallContext:
    request = ctx.request
    agent_id = getattr(request, "scope", {}).get(_AGENT_SCOPE_KEY)
    if not agent_id:
        # Only reachable if the SDK is mounted without the gate: refuse rather than guess.
        raise MCPError(Unauthorized.code, "no authenticated agent on this request")
    scope = getattr(request, "scope", {})
    teams = scope.get(_TEAMS_SCOPE_KEY)
    extra: dict[str, Any] = {"admin": bool(scope.get(_ADMIN_SCOPE_KEY))}
    if teams is not None:
        extra["teams"] = teams
    return CallContext(
        agent_id=agent_id,
        session_id=f"mcp-http-{uuid.uuid4().hex[:12]}",
        instance_id=services.instance_id,
        services=services,
        extra=extra,
    )


async def _dispatch(services: Services, ctx: CallContext, method: str, params: Any) -> Any:
    """Run one method through the shared Dispatcher; its error objects become MCPError.

    The reply-size bound applies here as on the socket: an oversized result becomes -32003.
    """
    dispatcher = mcp_dispatcher(services)
    request = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    reply = await dispatcher.handle_one(request, ctx)
    assert reply is not None and not is_notification(request)  # a request gets one reply
    _, reply = dispatcher.encode_reply(request, reply)
    if "error" in reply:
        error = reply["error"]
        raise MCPError(error["code"], error["message"], error.get("data"))
    return reply["result"]


def _list_tools_handler(get_services: GetServices) -> Any:
    async def list_tools(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        services = get_services()
        result = await _dispatch(services, _call_context(ctx, services), "tools/list", {})
        return types.ListToolsResult.model_validate(result)

    return list_tools


def _call_tool_handler(get_services: GetServices) -> Any:
    async def call_tool(
        ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        services = get_services()
        result = await _dispatch(
            services,
            _call_context(ctx, services),
            "tools/call",
            {"name": params.name, "arguments": params.arguments or {}},
        )
        return types.CallToolResult.model_validate(result)

    return call_tool
