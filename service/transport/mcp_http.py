"""MCP Streamable HTTP transport at `/mcp`, built on the official `mcp` SDK's server side.

The SDK speaks the protocol (handshake, discovery, SSE/JSON framing); tool listing and calls go
through the same `Dispatcher` as the WebSocket endpoint, so both transports answer identically.
Stateless mode: every HTTP request is served on its own, nothing is kept between them.

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
from starlette.types import Receive, Scope, Send

from service import __version__
from service.auth import bearer_token, verify_claims
from service.errors import TMWSError, Unauthorized
from service.jsonrpc import Dispatcher, error_response
from service.services import Services
from service.sessions import check_agent_id
from service.tools.registry import CallContext
from service.transport.ws import server_info

MCP_PATH = "/mcp"
AGENT_HEADER = "x-tmws-agent-id"
DEFAULT_HTTP_AGENT = "mcp-http"
#: Where the authenticated agent id travels from the ASGI wrapper to the SDK handlers.
_AGENT_SCOPE_KEY = "tmws.agent_id"
#: Team namespaces the token grants; absent on an open server (membership not enforced there).
_TEAMS_SCOPE_KEY = "tmws.teams"

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
    """ASGI wrapper: decide who is calling (or answer 401) before the SDK sees the request."""

    def __init__(self, inner: Callable[[Scope, Receive, Send], Any], get_services: GetServices):
        self._inner = inner
        self._get_services = get_services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._inner(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        try:
            agent_id, teams = self._identify(headers)
        except TMWSError as exc:
            status = 401 if isinstance(exc, Unauthorized) else 400
            response = JSONResponse(
                error_response(None, exc),
                status_code=status,
                headers={"WWW-Authenticate": "Bearer"} if status == 401 else None,
            )
            await response(scope, receive, send)
            return
        await self._inner(
            {**scope, _AGENT_SCOPE_KEY: agent_id, _TEAMS_SCOPE_KEY: teams}, receive, send
        )

    def _identify(self, headers: dict[str, str]) -> tuple[str, list[str] | None]:
        settings = self._get_services().settings
        if settings.auth_enabled:
            token = bearer_token(headers.get("authorization"))
            claims = verify_claims(settings.auth_secret or "", token, None)
            return check_agent_id(claims.agent_id), list(claims.teams)
        return check_agent_id(headers.get(AGENT_HEADER) or DEFAULT_HTTP_AGENT), None


def _call_context(ctx: ServerRequestContext[Any, Any], services: Services) -> CallContext:
    request = ctx.request
    agent_id = getattr(request, "scope", {}).get(_AGENT_SCOPE_KEY)
    if not agent_id:
        # Only reachable if the SDK is mounted without the gate: refuse rather than guess.
        raise MCPError(Unauthorized.code, "no authenticated agent on this request")
    teams = getattr(request, "scope", {}).get(_TEAMS_SCOPE_KEY)
    return CallContext(
        agent_id=agent_id,
        session_id=f"mcp-http-{uuid.uuid4().hex[:12]}",
        instance_id=services.instance_id,
        services=services,
        extra={} if teams is None else {"teams": teams},
    )


async def _dispatch(services: Services, ctx: CallContext, method: str, params: Any) -> Any:
    """Run one method through the shared Dispatcher; its error objects become MCPError."""
    dispatcher = Dispatcher(services.tools, server_info())
    reply = await dispatcher.handle_message(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}, ctx
    )
    assert isinstance(reply, dict)  # one request with an id always gets one reply
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
