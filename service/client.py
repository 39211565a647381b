"""Async WebSocket JSON-RPC client for `/ws/mcp`, for tests and the simulated agents.

One reader task matches replies to waiting calls by id, so many calls can share one socket.
When the socket closes, every waiting call fails with the `ConnectionClosed` that ended it.
"""

# The agreed client API takes per-call `timeout=` arguments (callers are test and swarm code).
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import itertools
import json
import re
from collections import deque
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

DEFAULT_PATH = "/ws/mcp"
#: Replies (e.g. recall results) may be large; bounded so a broken server cannot exhaust memory.
DEFAULT_MAX_SIZE = 64 << 20
_CLOSED = object()


class RpcError(Exception):
    """A JSON-RPC error object received from the server."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(f"[{code}] {message}")
        self.code = code
        self.message = message
        self.data = data

    @property
    def reason(self) -> str | None:
        return self.data.get("reason") if isinstance(self.data, dict) else None


def ws_url(url: str, agent_id: str, token: str | None = None) -> str:
    """`url` (base or full) with the endpoint path and the agent_id (and token) query."""
    parts = urlsplit(url)
    path = parts.path if parts.path not in ("", "/") else DEFAULT_PATH
    query = {"agent_id": agent_id}
    if token is not None:
        query["token"] = token
    extra = f"{parts.query}&" if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, path, extra + urlencode(query), ""))


class WsClient:
    """One agent session over one socket."""

    def __init__(self, conn: ClientConnection, welcome: dict[str, Any]) -> None:
        self.conn = conn
        self.welcome = welcome
        params = welcome.get("params") or {}
        self.session_id: str = params.get("session_id", "")
        self.instance_id: str = params.get("instance_id", "")
        self.agent_id: str = params.get("agent_id", "")
        self.server_version: str = params.get("server_version", "")
        self.notifications: deque[dict[str, Any]] = deque(maxlen=1000)
        self._ids = itertools.count(1)
        self._pending: dict[str | int, asyncio.Future[Any]] = {}
        self._unmatched: asyncio.Queue[Any] = asyncio.Queue()
        self._closed_exc: ConnectionClosed | None = None
        self._reader = asyncio.create_task(self._read(), name=f"ws-reader-{self.session_id}")

    @classmethod
    async def connect(
        cls,
        url: str,
        agent_id: str,
        token: str | None = None,
        timeout: float = 10,
        *,
        token_in_header: bool = False,
        max_size: int | None = DEFAULT_MAX_SIZE,
    ) -> WsClient:
        """Open a session and read its welcome; a refusal raises the ConnectionClosed (code, reason)."""
        headers = {"Authorization": f"Bearer {token}"} if token and token_in_header else None
        target = ws_url(url, agent_id, None if token_in_header else token)
        conn = await connect(
            target, additional_headers=headers, open_timeout=timeout, max_size=max_size
        )
        try:
            async with asyncio.timeout(timeout):
                first = await conn.recv()
            welcome = json.loads(first)
            if not isinstance(welcome, dict) or welcome.get("method") != "welcome":
                raise ValueError(f"expected a welcome notification, got {str(first)[:200]}")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, welcome)

    @property
    def closed(self) -> bool:
        return self._closed_exc is not None

    @property
    def close_code(self) -> int | None:
        """The close code the server sent, once closed."""
        exc = self._closed_exc
        return exc.rcvd.code if exc is not None and exc.rcvd is not None else None

    @property
    def close_reason(self) -> str | None:
        exc = self._closed_exc
        return exc.rcvd.reason if exc is not None and exc.rcvd is not None else None

    def next_id(self) -> int:
        """A request id this client has not used yet (for raw requests built by the caller)."""
        return next(self._ids)

    async def call(self, method: str, params: Any = None, *, timeout: float = 30) -> Any:
        """Send a request and return its result; raises RpcError for an error reply."""
        request: dict[str, Any] = {"jsonrpc": "2.0", "id": self.next_id(), "method": method}
        if params is not None:
            request["params"] = params
        reply = await self._request(request, timeout)
        if "error" in reply:
            error = reply["error"]
            raise RpcError(error.get("code", 0), error.get("message", ""), error.get("data"))
        return reply.get("result")

    async def call_tool(
        self, name: str, arguments: dict[str, Any] | None = None, *, timeout: float = 30
    ) -> dict[str, Any]:
        """MCP `tools/call`: the CallToolResult (content, structuredContent, isError)."""
        return await self.call(
            "tools/call", {"name": name, "arguments": arguments or {}}, timeout=timeout
        )

    async def notify(self, method: str, params: Any = None) -> None:
        """Send a notification (no reply expected)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        await self._send(json.dumps(message))

    async def call_raw(self, message: Any, *, timeout: float = 30) -> Any:
        """Send anything (text or a JSON value) and return the raw reply it gets.

        A dict with a string/int id waits for the reply with that id; anything else (text,
        batches, messages without a usable id) waits for the next reply no call claimed.
        """
        if isinstance(message, dict) and _is_id(message.get("id")):
            return await self._request(message, timeout)
        await self._send(message if isinstance(message, str | bytes) else json.dumps(message))
        return await self.next_unmatched(timeout=timeout)

    async def send_raw(self, message: str | bytes) -> None:
        """Send a frame as is, waiting for nothing."""
        await self._send(message)

    async def next_unmatched(self, *, timeout: float = 30) -> Any:
        """The next reply no pending call claimed (batch replies, id-null errors)."""
        async with asyncio.timeout(timeout):
            item = await self._unmatched.get()
        if item is _CLOSED:
            self._unmatched.put_nowait(_CLOSED)  # later callers fail the same way
            assert self._closed_exc is not None
            raise self._closed_exc
        return item

    def take_unmatched(self) -> list[Any]:
        """Every reply no call claimed that has arrived so far, without waiting (consumes them)."""
        taken: list[Any] = []
        while not self._unmatched.empty():
            item = self._unmatched.get_nowait()
            if item is _CLOSED:
                self._unmatched.put_nowait(_CLOSED)  # next_unmatched still fails after the close
                break
            taken.append(item)
        return taken

    async def wait_closed(self, *, timeout: float = 30) -> ConnectionClosed:
        """Wait until the server closes the socket; return how it closed."""
        async with asyncio.timeout(timeout):
            await asyncio.shield(self._reader)
        assert self._closed_exc is not None
        return self._closed_exc

    async def close(self) -> None:
        """Close the socket and stop the reader."""
        await self.conn.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> WsClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _request(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        request_id = message["id"]
        if request_id in self._pending:
            raise ValueError(f"id {request_id!r} is already waiting for a reply")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            await self._send(_dumps(message))
            async with asyncio.timeout(timeout):
                return await future
        finally:
            self._pending.pop(request_id, None)

    async def _send(self, text: str | bytes) -> None:
        if self._closed_exc is not None:
            raise self._closed_exc
        await self.conn.send(text)

    async def _read(self) -> None:
        try:
            while True:
                self._route(await self.conn.recv())
        except ConnectionClosed as exc:
            self._closed_exc = exc
        finally:
            if self._closed_exc is None:  # reader cancelled or crashed: still fail the waiters
                self._closed_exc = ConnectionClosed(None, None)
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._closed_exc)
            self._unmatched.put_nowait(_CLOSED)

    def _route(self, frame: str | bytes) -> None:
        try:
            message = _loads(frame)
        except ValueError:
            self._unmatched.put_nowait(frame)
            return
        if isinstance(message, dict):
            request_id = message.get("id")
            if "method" in message and "id" not in message:
                self.notifications.append(message)
                return
            if _is_id(request_id) and request_id in self._pending:
                future = self._pending[request_id]
                if not future.done():
                    future.set_result(message)
                return
        self._unmatched.put_nowait(message)


_LONG_DIGITS = re.compile(r"\d{19}")


def _dumps(message: dict[str, Any]) -> str:
    """Request text; orjson first (a swarm's CPU is the load generator's), json for the rest."""
    try:
        return orjson.dumps(message).decode("utf-8")
    except TypeError:  # a lone surrogate, an int past 64 bits (hostile tests send such things)
        return json.dumps(message)


def _loads(frame: str | bytes) -> Any:
    """A reply as json reads it: orjson for the common case, json where orjson refuses."""
    text = frame.decode("utf-8", "replace") if isinstance(frame, bytes) else frame
    if _LONG_DIGITS.search(text) is None:  # orjson reads a 19+-digit integer as a float
        try:
            return orjson.loads(frame)
        except orjson.JSONDecodeError:
            pass
    return json.loads(frame)  # raises ValueError for what is really not JSON


def _is_id(value: object) -> bool:
    return isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool))
