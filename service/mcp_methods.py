"""The MCP methods served over the WebSocket JSON-RPC endpoint: handshake, ping and tools.

Each method takes `(params, ctx)` and returns a JSON-able result or raises a `TMWSError`;
`McpMethods.handler_table` hands them, and every tool under its own name, to the MCP-agnostic
`service.jsonrpc.Dispatcher`, which turns raised errors into JSON-RPC error objects. The one
exception is `tools/call`, where MCP wants a tool's own failure, and since 2025-11-25 (SEP-1303)
also a failed validation of its arguments, reported as a result with `isError: true` so the
caller (often a model) can read it and correct itself. An unknown tool stays -32602.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from service.context import CallContext
from service.errors import InvalidParams, TMWSError
from service.jsonrpc import Handler, HandlerTable, Paging
from service.tools.registry import ToolRegistry
from service.wire import to_json_text

#: Handshake-era MCP versions this server speaks, newest first.
SUPPORTED_PROTOCOL_VERSIONS: tuple[str, ...] = (
    "2025-11-25",
    "2025-06-18",
    "2025-03-26",
    "2024-11-05",
)
LATEST_PROTOCOL_VERSION = SUPPORTED_PROTOCOL_VERSIONS[0]

Method = Handler


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

    def handler_table(self) -> HandlerTable:
        """The dispatcher's table: MCP methods, then every tool callable under its own name
        (an MCP method wins over a tool of the same name)."""
        tools: dict[str, Method] = {
            name: partial(self._tools.call, name) for name in self._tools.names()
        }
        return HandlerTable(
            requests={**tools, **self.requests()},
            notifications={**tools, **self.notifications()},
            paging=self.paging,
        )

    def paging(self, request: Any, result: Any) -> Paging | None:
        """How the tool behind `request` (called directly or via tools/call) pages, if it takes a
        positive `limit`; `returned` is what came back, as fewer rows than the limit may exist."""
        tool, arguments = _tool_and_arguments(request)
        if tool is None or tool not in self._tools:
            return None
        fields = self._tools.get(tool).args_model.model_fields
        if "limit" not in fields:
            return None
        current = arguments.get("limit", fields["limit"].default)
        if not isinstance(current, int) or current < 1:
            return None
        items = _item_count(result)
        returned = min(current, items) if items else current
        return Paging(tool, returned, "offset" in fields)

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


def _item_count(result: Any) -> int | None:
    """The `count` a list tool's result reports (directly or inside a tools/call result)."""
    if isinstance(result, dict) and isinstance(result.get("structuredContent"), dict):
        result = result["structuredContent"]
    count = result.get("count") if isinstance(result, dict) else None
    return count if isinstance(count, int) and not isinstance(count, bool) else None


def _tool_and_arguments(request: Any) -> tuple[str | None, dict[str, Any]]:
    """Which tool a request ran (directly or via tools/call) and with which arguments."""
    if not isinstance(request, dict):
        return None, {}
    method, params = request.get("method"), request.get("params")
    if not isinstance(params, dict):
        params = {}
    if method == "tools/call":
        arguments = params.get("arguments")
        name = params.get("name")
        return (name if isinstance(name, str) else None), (
            arguments if isinstance(arguments, dict) else {}
        )
    return (method if isinstance(method, str) else None), params
