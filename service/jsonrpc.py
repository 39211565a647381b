"""Transport-free JSON-RPC 2.0 dispatcher: plain messages in, plain messages out.

This is the one place exceptions become JSON-RPC error objects. Transports hand it text (or
already-parsed objects) and send back whatever it returns; `None` means "send nothing"
(notifications, or a batch made only of notifications).

Methods: the MCP ones (`service.mcp_methods`) plus every registered tool under its own name,
whose params are the tool's arguments and whose result is the tool's dict.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from service.errors import InternalError, InvalidRequest, MethodNotFound, ParseError, TMWSError
from service.mcp_methods import McpMethods, Method, to_json_text
from service.tools.registry import CallContext, ToolRegistry

log = logging.getLogger(__name__)

JSONRPC_VERSION = "2.0"
Id = str | int | None
Reply = dict[str, Any] | list[dict[str, Any]]


def error_response(request_id: Id, exc: TMWSError) -> dict[str, Any]:
    """A JSON-RPC error response for `exc`."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": exc.to_error_object()}


def success_response(request_id: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def encode(reply: Reply) -> str:
    """Wire text of a reply."""
    return to_json_text(reply)


def parse(raw: str | bytes) -> Any:
    """Decode one frame; raise ParseError if it is not JSON (or not UTF-8)."""
    try:
        return json.loads(raw)
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise ParseError(f"parse error: {exc}") from None


def _valid_id(value: object) -> bool:
    # JSON-RPC ids are strings, integers or null; booleans are ints to Python but not ids.
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def _request_id(msg: Any) -> Id:
    """The id to echo in an error about `msg`: its own if readable, else null."""
    if isinstance(msg, dict) and _valid_id(msg.get("id")):
        return msg.get("id")
    return None


class Dispatcher:
    """Routes JSON-RPC messages to MCP methods and tools, one call context per connection."""

    def __init__(self, tools: ToolRegistry, server_info: dict[str, Any]) -> None:
        mcp = McpMethods(tools, server_info)
        self._tools = tools
        self._requests: dict[str, Method] = mcp.requests()
        self._notifications: dict[str, Method] = mcp.notifications()

    async def handle_text(self, raw: str | bytes, ctx: CallContext) -> str | None:
        """Handle one frame of text; return the reply text or None."""
        try:
            obj = parse(raw)
        except ParseError as exc:
            return encode(error_response(None, exc))
        reply = await self.handle_message(obj, ctx)
        return None if reply is None else encode(reply)

    async def handle_message(self, obj: Any, ctx: CallContext) -> Reply | None:
        """Handle a parsed request, notification or batch."""
        if isinstance(obj, list):
            if not obj:
                return error_response(None, InvalidRequest("empty batch"))
            replies = await asyncio.gather(*(self._handle_one(m, ctx) for m in obj))
            answered = [r for r in replies if r is not None]
            return answered or None
        return await self._handle_one(obj, ctx)

    def reject(self, obj: Any, exc: TMWSError) -> Reply | None:
        """Answer every request in `obj` with `exc` without running it (e.g. rate limited)."""
        if isinstance(obj, list):
            if not obj:
                return error_response(None, exc)
            answered = [r for r in (self._reject_one(m, exc) for m in obj) if r is not None]
            return answered or None
        return self._reject_one(obj, exc)

    @staticmethod
    def _reject_one(msg: Any, exc: TMWSError) -> dict[str, Any] | None:
        if isinstance(msg, dict) and "id" not in msg:
            return None  # a notification: nobody is waiting for an answer
        return error_response(_request_id(msg), exc)

    async def _handle_one(self, msg: Any, ctx: CallContext) -> dict[str, Any] | None:
        try:
            method, params, is_notification = self._check(msg)
        except InvalidRequest as exc:
            return error_response(_request_id(msg), exc)
        if is_notification:
            await self._notify(method, params, ctx)
            return None
        request_id: Id = msg["id"]
        try:
            return success_response(request_id, await self._call(method, params, ctx))
        except TMWSError as exc:
            return error_response(request_id, exc)
        except Exception:  # the boundary: a bug becomes -32603, the traceback stays in the log
            error_id = uuid.uuid4().hex[:12]
            log.exception("internal error in %r (id=%r, error_id=%s)", method, request_id, error_id)
            return error_response(
                request_id,
                InternalError(f"internal error (error_id {error_id})", {"error_id": error_id}),
            )

    @staticmethod
    def _check(msg: Any) -> tuple[str, Any, bool]:
        """(method, params, is_notification) of a well-formed message, else InvalidRequest."""
        if not isinstance(msg, dict):
            raise InvalidRequest(f"a request must be an object, got {type(msg).__name__}")
        if msg.get("jsonrpc") != JSONRPC_VERSION:
            raise InvalidRequest('"jsonrpc" must be exactly "2.0"')
        method = msg.get("method")
        if not isinstance(method, str):
            raise InvalidRequest('"method" must be a string')
        if "id" in msg and not _valid_id(msg["id"]):
            raise InvalidRequest('"id" must be a string, an integer or null')
        params = msg.get("params")
        if params is not None and not isinstance(params, dict | list):
            raise InvalidRequest('"params" must be an object or an array')
        return method, params, "id" not in msg

    async def _call(self, method: str, params: Any, ctx: CallContext) -> Any:
        handler = self._requests.get(method)
        if handler is not None:
            return await handler(params, ctx)
        if method in self._tools:
            return await self._tools.call(method, params, ctx)
        raise MethodNotFound(f"method not found: {method!r}", {"method": method})

    async def _notify(self, method: str, params: Any, ctx: CallContext) -> None:
        # Nobody hears about a notification's failure, so the log is the only record of it.
        try:
            handler = self._notifications.get(method)
            if handler is not None:
                await handler(params, ctx)
            elif method in self._tools:
                await self._tools.call(method, params, ctx)
            else:
                log.debug("ignoring unknown notification %r", method)
        except TMWSError as exc:
            log.info("notification %r failed: %s", method, exc.message)
        except Exception:  # boundary, as in _handle_one
            log.exception("internal error in notification %r", method)
