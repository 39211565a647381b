"""Transport-free JSON-RPC 2.0 dispatcher: plain messages in, plain messages out.

This is the one place exceptions become JSON-RPC error objects. Transports hand it text (or
already-parsed objects) and send back whatever it returns; `None` means "send nothing"
(notifications, or a batch made only of notifications).

It knows no MCP and no tools: it routes by a `HandlerTable` it is given (the server's is built by
`service.mcp_methods.McpMethods`: the MCP methods plus every tool under its own name).

Limits (`JsonRpcLimits`): nesting depth (-32700), batch length (-32600) and reply size (-32003
`reply_too_large`, with paging hints). Every reply is encodable: a reply that is not (a lone
surrogate) is replaced by an error object for its id, so a batch never loses its valid replies.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from service import config
from service.context import CallContext
from service.errors import (
    BatchTooLong,
    InternalError,
    InvalidRequest,
    InvalidText,
    MethodNotFound,
    ReplyTooLarge,
    TMWSError,
)
from service.metrics import OTHER_METHOD, ServiceMetrics
from service.wire import encode_checked, is_valid_unicode, to_json_text
from service.wire import parse as parse_json

log = logging.getLogger(__name__)

JSONRPC_VERSION = "2.0"
Id = str | int | None
Reply = dict[str, Any] | list[dict[str, Any]]
#: Fraction of the proportional page size to suggest, so the next reply fits with room to spare.
_PAGE_SAFETY = 0.8


#: A method: takes the request's params and the caller's context, returns a JSON-able result or
#: raises a `TMWSError`.
Handler = Callable[[Any, CallContext], Awaitable[Any]]


@dataclass(frozen=True)
class Paging:
    """How the request behind an oversized reply pages: which method to call again, how many
    items the reply held, and whether the method also takes an `offset`."""

    method: str
    returned: int
    offset: bool


def _no_paging(request: Any, result: Any) -> Paging | None:
    return None


@dataclass(frozen=True)
class HandlerTable:
    """What a dispatcher routes to: request and notification handlers by method name, and how a
    request pages (for the `reply_too_large` hint)."""

    requests: Mapping[str, Handler]
    notifications: Mapping[str, Handler] = field(default_factory=dict)
    paging: Callable[[Any, Any], Paging | None] = _no_paging


@dataclass(frozen=True)
class JsonRpcLimits:
    max_json_depth: int = config.DEFAULT_MAX_JSON_DEPTH
    max_batch: int = config.DEFAULT_MAX_BATCH
    max_reply_bytes: int = config.DEFAULT_MAX_REPLY_BYTES

    @classmethod
    def from_settings(cls, limits: config.LimitSettings) -> JsonRpcLimits:
        return cls(limits.max_json_depth, limits.max_batch, limits.max_reply_bytes)


def error_response(request_id: Id, exc: TMWSError) -> dict[str, Any]:
    """A JSON-RPC error response for `exc`."""
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "error": exc.to_error_object()}


def success_response(request_id: Id, result: Any) -> dict[str, Any]:
    return {"jsonrpc": JSONRPC_VERSION, "id": request_id, "result": result}


def encode(reply: Reply) -> str:
    """Wire text of a reply built by the server itself (welcome, refusals)."""
    return to_json_text(reply)


def parse(raw: str | bytes, max_depth: int = config.DEFAULT_MAX_JSON_DEPTH) -> Any:
    """Decode one frame; raise ParseError if it is not strict JSON (or not UTF-8, or too deep)."""
    return parse_json(raw, max_depth=max_depth)


def _valid_id(value: object) -> bool:
    # JSON-RPC ids are strings, integers or null; booleans are ints to Python but not ids.
    return (
        value is None
        or (isinstance(value, str) and is_valid_unicode(value))
        or (isinstance(value, int) and not isinstance(value, bool))
    )


def _request_id(msg: Any) -> Id:
    """The id to echo in an error about `msg`: its own if readable, else null."""
    if isinstance(msg, dict) and _valid_id(msg.get("id")):
        return msg.get("id")
    return None


def is_notification(msg: Any) -> bool:
    """A well-formed-enough message without an id: nobody waits for its answer."""
    return isinstance(msg, dict) and "id" not in msg


class Dispatcher:
    """Routes JSON-RPC messages to the handlers of a table, one call context per connection."""

    def __init__(
        self,
        handlers: HandlerTable,
        limits: JsonRpcLimits | None = None,
        metrics: ServiceMetrics | None = None,
    ) -> None:
        #: where reply serialisation time goes (request counts come from each call's services)
        self.metrics = metrics
        self.limits = limits or JsonRpcLimits()
        self._requests = handlers.requests
        self._notifications = handlers.notifications
        self._paging = handlers.paging

    def parse(self, raw: str | bytes) -> Any:
        """Decode one frame under this dispatcher's depth limit (ParseError otherwise)."""
        return parse_json(raw, max_depth=self.limits.max_json_depth)

    def check_batch(self, obj: Any) -> None:
        """InvalidRequest for an empty batch, BatchTooLong past the limit; else nothing."""
        if not isinstance(obj, list):
            return
        if not obj:
            raise InvalidRequest("empty batch")
        if len(obj) > self.limits.max_batch:
            raise BatchTooLong(
                f"batch of {len(obj)} requests exceeds the limit of {self.limits.max_batch}; "
                "split it",
                {"size": len(obj), "limit": self.limits.max_batch},
            )

    async def handle_text(self, raw: str | bytes, ctx: CallContext) -> str | None:
        """Handle one frame of text; return the reply text or None."""
        try:
            obj = self.parse(raw)
            self.check_batch(obj)
        except TMWSError as exc:
            return encode(error_response(None, exc))
        if isinstance(obj, list):
            replies = await asyncio.gather(*(self.handle_one(m, ctx) for m in obj))
            return self.encode_batch(list(zip(obj, replies, strict=True)))
        reply = await self.handle_one(obj, ctx)
        return None if reply is None else self.encode_reply(obj, reply)[0]

    async def handle_message(self, obj: Any, ctx: CallContext) -> Reply | None:
        """Handle a parsed request, notification or batch (objects, no size bound)."""
        if isinstance(obj, list):
            try:
                self.check_batch(obj)
            except TMWSError as exc:
                return error_response(None, exc)
            replies = await asyncio.gather(*(self.handle_one(m, ctx) for m in obj))
            answered = [r for r in replies if r is not None]
            return answered or None
        return await self.handle_one(obj, ctx)

    def reject(self, obj: Any, exc: TMWSError) -> Reply | None:
        """Answer every request in `obj` with `exc` without running it (e.g. rate limited)."""
        if isinstance(obj, list):
            if not obj:
                return error_response(None, exc)
            answered = [r for r in (self.reject_one(m, exc) for m in obj) if r is not None]
            return answered or None
        return self.reject_one(obj, exc)

    @staticmethod
    def reject_one(msg: Any, exc: TMWSError) -> dict[str, Any] | None:
        """The refusal of one message, or None for a notification."""
        if is_notification(msg):
            return None  # nobody is waiting for an answer
        return error_response(_request_id(msg), exc)

    # ---------------------------------------------------------------- encoding with limits

    def encode_reply(
        self, request: Any, reply: dict[str, Any], budget: int | None = None
    ) -> tuple[str, dict[str, Any]]:
        """(wire text, reply actually sent): an unencodable or oversized reply becomes an error."""
        allowed = self.limits.max_reply_bytes if budget is None else budget
        started = time.perf_counter()
        try:
            text, size = encode_checked(reply)
        except UnicodeEncodeError:
            rid = reply.get("id")
            safe_id = rid if _valid_id(rid) else None
            replacement = error_response(
                safe_id,
                InvalidText(
                    "the reply contains text that is not valid Unicode (a lone surrogate); "
                    "send surrogates only as pairs",
                    field="params",
                ),
            )
            return to_json_text(replacement), replacement
        if self.metrics is not None:
            self.metrics.observe_stage("serialise", time.perf_counter() - started)
        if size <= allowed or "error" in reply:
            return text, reply
        too_large = self._too_large(request, reply.get("result"), size, allowed)
        replacement = error_response(reply.get("id"), too_large)
        return to_json_text(replacement), replacement

    def encode_batch(self, items: list[tuple[Any, dict[str, Any] | None]]) -> str | None:
        """One batch reply within the size limit; replies past it become reply_too_large errors."""
        budget = self.limits.max_reply_bytes
        parts: list[str] = []
        for request, reply in items:
            if reply is None:
                continue
            text, _ = self.encode_reply(request, reply, max(budget, 0))
            budget -= len(text.encode("utf-8"))
            parts.append(text)
        return "[" + ",".join(parts) + "]" if parts else None

    def _too_large(self, request: Any, result: Any, size: int, allowed: int) -> ReplyTooLarge:
        limit = self.limits.max_reply_bytes
        data: dict[str, Any] = {"size": size, "limit": limit}
        if allowed < limit:
            data["batch_remaining"] = allowed
            hint = "the batch's replies together exceed the limit: send fewer requests per batch"
        else:
            hint = "ask for less"
        page = self._page_hint(self._paging(request, result), size, allowed)
        if page:
            data.update(page)
            hint = page["hint"]
        data["hint"] = hint
        return ReplyTooLarge(
            f"reply of {size} bytes exceeds the {allowed}-byte limit: {hint}", data
        )

    @staticmethod
    def _page_hint(page: Paging | None, size: int, allowed: int) -> dict[str, Any] | None:
        """For methods that page (a `limit` argument): a limit whose reply should fit."""
        if page is None:
            return None
        suggested = max(1, int(page.returned * allowed / size * _PAGE_SAFETY))
        paging = " and page with offset" if page.offset else ""
        return {
            "tool": page.method,
            "suggested_limit": suggested,
            "hint": f"call {page.method} with limit={suggested}{paging}",
        }

    # ---------------------------------------------------------------- one message

    async def handle_one(self, msg: Any, ctx: CallContext) -> dict[str, Any] | None:
        """The reply to one message (None for a notification); never raises."""
        try:
            method, params, notification = self._check(msg)
        except InvalidRequest as exc:
            return error_response(_request_id(msg), exc)
        if notification:
            await self._notify(method, params, ctx)
            return None
        request_id: Id = msg["id"]
        started = time.perf_counter()
        code = 0
        try:
            return success_response(request_id, await self._call(method, params, ctx))
        except TMWSError as exc:
            code = exc.code
            return error_response(request_id, exc)
        except Exception:  # the boundary: a bug becomes -32603, the traceback stays in the log
            error_id = uuid.uuid4().hex[:12]
            log.exception("internal error in %r (id=%r, error_id=%s)", method, request_id, error_id)
            code = InternalError.code
            return error_response(
                request_id,
                InternalError(f"internal error (error_id {error_id})", {"error_id": error_id}),
            )
        finally:
            label = method if self.knows(method) else OTHER_METHOD
            ctx.services.metrics.observe_request(label, time.perf_counter() - started, code)

    def knows(self, method: str) -> bool:
        """A method this server implements (metrics label only these: names are client-chosen)."""
        return method in self._requests

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
            raise InvalidRequest(
                '"id" must be a string of valid Unicode (no lone surrogates), an integer or null'
            )
        if not is_valid_unicode(method):
            raise InvalidRequest('"method" is not valid Unicode (it holds a lone surrogate)')
        params = msg.get("params")
        if params is not None and not isinstance(params, dict | list):
            raise InvalidRequest('"params" must be an object or an array')
        return method, params, "id" not in msg

    async def _call(self, method: str, params: Any, ctx: CallContext) -> Any:
        handler = self._requests.get(method)
        if handler is not None:
            return await handler(params, ctx)
        raise MethodNotFound(f"method not found: {method!r}", {"method": method})

    async def _notify(self, method: str, params: Any, ctx: CallContext) -> None:
        # Nobody hears about a notification's failure, so the log is the only record of it.
        try:
            handler = self._notifications.get(method)
            if handler is not None:
                await handler(params, ctx)
            else:
                log.debug("ignoring unknown notification %r", method)
        except TMWSError as exc:
            log.info("notification %r failed: %s", method, exc.message)
        except Exception:  # boundary, as in handle_one
            log.exception("internal error in notification %r", method)
