"""The MCP methods served over the WebSocket JSON-RPC endpoint: handshake, ping and tools.

Each method takes `(params, ctx)` and returns a JSON-able result or raises a `TMWSError`;
`service.jsonrpc.Dispatcher` turns raised errors into JSON-RPC error objects. The one
exception is `tools/call`, where MCP wants a tool's own failure, and since 2025-11-25 (SEP-1303)
also a failed validation of its arguments, reported as a result with `isError: true` so the
caller (often a model) can read it and correct itself. An unknown tool stays -32602.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from service.errors import InvalidParams, TMWSError
from service.tools.registry import CallContext, ToolRegistry
from service.wire import to_json_text

#: Handshake-era MCP versions this server speaks, newest first.
SUPPORTED_PROTOCOL_VERSIONS: tuple[str, ...] = (
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
)
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0]

Method = Callable[[Any, CallContext], Awaitable[Any]]


def negotiate_version(requested: object) -> str:
    """The client's version if we support it, else our latest (the client then decides)."""
    if isinstance(requested, str) and requested in SUPPORTED_PROTOCOL_VERSIONS:
        return requested
    return LATEST_PROTOCOL_VERSION


def tool_result(result: dict[str, Any]) -> dict[str, Any]:
    """An MCP CallToolResult for a tool that succeeded."""
    return {
        "content": [{"type": "text", "text": to_json_text(result)}],
        "structuredContent": result,
        "isError": False,
    }


def tool_error_result(exc: TMWSError) -> dict[str, Any]:
    """An MCP CallToolResult for a tool that ran and failed on purpose."""
    body = {"error": exc.to_error_object()}
    return {
        "content": [{"type": "text", "text": to_json_text(body)}],
        "structuredContent": body,
        "isError": True,
    }


def _object_params(method: str, params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidParams(
            f"params for {method!r} must be an object, got {type(params).__name__}", field="params"
        )
    return params


class McpMethods:
    """`initialize`, `ping`, `tools/list`, `tools/call` over one tool registry."""

    def __init__(self, tools: ToolRegistry, server_info: dict[str, Any]) -> None:
        self._tools = tools
        self._server_info = server_info

    def requests(self) -> dict[str, Method]:
        """Request methods by name."""
        return {
            "initialize": self.initialize,
            "ping": self.ping,
            "tools/list": self.tools_list,
            "tools/call": self.tools_call,
        }

    def notifications(self) -> dict[str, Method]:
        """Notification methods by name (their results are discarded)."""
        return {"notifications/initialized": self.initialized}

    async def initialize(self, params: Any, ctx: CallContext) -> dict[str, Any]:
        """Negotiate the protocol version and describe this server."""
        p = _object_params("initialize", params)
        requested = p.get("protocolVersion")
        if requested is not None and not isinstance(requested, str):
            raise InvalidParams("protocolVersion must be a string", field="protocolVersion")
        version = negotiate_version(requested)
        ctx.extra["mcp_protocol_version"] = version
        ctx.extra["mcp_client_info"] = p.get("clientInfo")
        return {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": dict(self._server_info),
        }

    async def initialized(self, params: Any, ctx: CallContext) -> None:
        ctx.extra["mcp_initialized"] = True

    async def ping(self, params: Any, ctx: CallContext) -> dict[str, Any]:
        return {}

    async def tools_list(self, params: Any, ctx: CallContext) -> dict[str, Any]:
        return {"tools": self._tools.describe()}

    async def tools_call(self, params: Any, ctx: CallContext) -> dict[str, Any]:
        """Run one tool; protocol faults raise, bad arguments and tool errors become isError."""
        p = _object_params("tools/call", params)
        name = p.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidParams("tools/call needs a string 'name'", field="name")
        if name not in self._tools:
            raise InvalidParams(f"unknown tool: {name!r}", field="name")
        arguments = p.get("arguments")
        if arguments is not None and not isinstance(arguments, dict):
            raise InvalidParams("tools/call 'arguments' must be an object", field="arguments")
        try:
            args = self._tools.validate(name, arguments)
            result = await self._tools.get(name).handler(ctx, args)
        except TMWSError as exc:
            return tool_error_result(exc)
        return tool_result(result)
