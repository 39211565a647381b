"""Driver-side protocol client: raw JSON-RPC sessions whose every request becomes one history row.

`ProtoSession` is a deliberately low-level WebSocket session: it sends any frame, reads every
frame the server sends, matches replies to requests by id *and id type*, and keeps the frames
nothing asked for (so crosstalk between sockets is visible). `DriverLog` records each request as a
row of `analysis.schema.HISTORY_SCHEMA`; its batches go into `facts[runner.DRIVER_BATCHES]`.

A reply that breaks the protocol (wrong `jsonrpc`, both or neither of result/error) or fails the
caller's `expect` check becomes a failed row with the client-side code `CLIENT_ERROR` and a reason
saying what was wrong, so checks can read protocol violations from rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from actors.recorder import (
    CLIENT_ERROR,
    CLIENT_TIMEOUT,
    CONNECTION_LOST,
    Outcome,
    SessionInfo,
    build_row,
)
from actors.workload import RequestSpec, op_for_method
from analysis.schema import HistoryBuffer
from service.client import ws_url

#: Checks a successful result; returns what is wrong, or None when it is as expected.
Expect = Callable[[Any], str | None]
_NULL = ("null", None)


def id_key(request_id: Any) -> tuple[str, Any]:
    """Ids match only with the same JSON type: the string "1" is not the integer 1."""
    if request_id is None:
        return _NULL
    return (type(request_id).__name__, request_id)


class ProtoSession:
    """One raw WebSocket session of one agent to one instance."""

    def __init__(self, conn: ClientConnection, welcome: dict[str, Any], url: str) -> None:
        params = welcome.get("params") or {}
        self.conn = conn
        self.welcome = welcome
        self.url = url
        self.session_id: str = str(params.get("session_id", ""))
        self.instance_id: str = str(params.get("instance_id", ""))
        self.agent_id: str = str(params.get("agent_id", ""))
        self.unexpected: list[Any] = []
        self.notifications: list[dict[str, Any]] = []
        self.closed: ConnectionClosed | None = None
        self._ids = itertools.count(1)
        self._pending: dict[tuple[str, Any], asyncio.Future[dict[str, Any]]] = {}
        self._null_waiters: list[asyncio.Future[Any]] = []
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, url: str, agent_id: str, timeout_s: float = 10.0) -> ProtoSession:
        """Connect and read the welcome; a refusal raises the server's ConnectionClosed."""
        target = ws_url(url, agent_id)
        conn = await connect(target, open_timeout=timeout_s, max_size=64 << 20)
        try:
            async with asyncio.timeout(timeout_s):
                first = json.loads(await conn.recv())
            if not isinstance(first, dict) or first.get("method") != "welcome":
                raise ValueError(f"expected a welcome notification, got {str(first)[:200]}")
        except BaseException:
            await conn.close()
            raise
        return cls(conn, first, url)

    def info(self, node_id: str | None = None) -> SessionInfo:
        return SessionInfo(self.agent_id, self.session_id, self.instance_id, node_id)

    def next_id(self) -> int:
        return next(self._ids)

    async def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send a request object and wait for the reply carrying its id (same JSON type)."""
        key = id_key(message.get("id"))
        if key in self._pending:
            raise ValueError(f"id {message.get('id')!r} is already waiting")
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[key] = future
        try:
            await self._send(json.dumps(message))
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            self._pending.pop(key, None)

    async def send_expecting_null_id(self, frame: str, timeout_s: float) -> Any:
        """Send a frame the server can only answer with `id: null` (parse errors, bad requests)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._null_waiters.append(future)
        try:
            await self._send(frame)
            async with asyncio.timeout(timeout_s):
                return await future
        finally:
            if future in self._null_waiters:
                self._null_waiters.remove(future)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.conn.close()
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _send(self, text: str) -> None:
        if self.closed is not None:
            raise self.closed
        await self.conn.send(text)

    async def _read(self) -> None:
        try:
            while True:
                self._route(await self.conn.recv())
        except ConnectionClosed as exc:
            self.closed = exc
        finally:
            if self.closed is None:
                self.closed = ConnectionClosed(None, None)
            for future in [*self._pending.values(), *self._null_waiters]:
                if not future.done():
                    future.set_exception(self.closed)

    def _route(self, frame: str | bytes) -> None:
        try:
            message = json.loads(frame)
        except ValueError:
            self.unexpected.append(frame)
            return
        if isinstance(message, dict) and "method" in message and "id" not in message:
            self.notifications.append(message)
            return
        key = id_key(message.get("id")) if isinstance(message, dict) else ("batch", None)
        future = self._pending.get(key) if key != _NULL else None
        if future is None and key == _NULL and self._null_waiters:
            future = self._null_waiters.pop(0)
        if future is not None and not future.done():
            future.set_result(message)
            return
        self.unexpected.append(message)


def envelope_problem(reply: Any, sent_id: Any) -> str | None:
    """What makes `reply` an invalid JSON-RPC 2.0 response to a request with `sent_id`."""
    if not isinstance(reply, dict):
        return f"bad_envelope: reply is {type(reply).__name__}, not an object"
    if reply.get("jsonrpc") != "2.0":
        return f"bad_envelope: jsonrpc={reply.get('jsonrpc')!r}"
    if id_key(reply.get("id")) != id_key(sent_id):
        return f"bad_envelope: id {reply.get('id')!r} answers {sent_id!r}"
    if ("result" in reply) == ("error" in reply):
        return "bad_envelope: needs exactly one of result and error"
    return None


def error_outcome(error: Mapping[str, Any]) -> Outcome:
    """A failed outcome from a JSON-RPC error object; a named field is kept in the reason."""
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    reason = str(data.get("reason") or "rpc_error")
    if data.get("field"):
        reason = f"{reason} field={data['field']}"
    return Outcome(
        error_code=int(error.get("code", 0)),
        error_reason=reason,
        error_message=str(error.get("message", "")),
    )


def violation(text: str) -> Outcome:
    """A reply that arrived but is wrong (protocol or content): a client-side failure."""
    return Outcome(error_code=CLIENT_ERROR, error_reason=text[:300], error_message=text)


@dataclass
class Call:
    """What one recorded request produced."""

    reply: dict[str, Any] | None
    outcome: Outcome
    row: dict[str, Any]

    @property
    def result(self) -> Any:
        return self.reply.get("result") if self.reply else None

    @property
    def ok(self) -> bool:
        return bool(self.row["success"])


@dataclass
class DriverLog:
    """Records every driver request as one history row (drained as Arrow record batches)."""

    run_id: str
    scenario: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    _buffer: HistoryBuffer = field(default_factory=HistoryBuffer)

    def record(
        self,
        *,
        phase: str,
        method: str,
        session: SessionInfo,
        outcome: Outcome,
        t_send_ns: int,
        t_recv_ns: int,
        params: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> dict[str, Any]:
        """Append one row; `overrides` set columns directly (key, op, version_seen, route...)."""
        spec = RequestSpec(
            method=method,
            params=params or {},
            op=overrides.pop("op", op_for_method(method)),
            namespace=overrides.pop("namespace", session.agent_id),
            key=overrides.pop("key", None),
            pattern_name=overrides.pop("pattern_name", None),
        )
        row = build_row(
            run_id=self.run_id,
            scenario=self.scenario,
            phase=phase,
            request=spec,
            session=session,
            outcome=outcome,
            t_send_ns=t_send_ns,
            t_recv_ns=t_recv_ns,
        )
        if spec.pattern_name is not None:
            row["pattern_name"] = spec.pattern_name
        row.update(overrides)
        self._buffer.append(**row)
        self.rows.append(row)
        return row

    async def call(
        self,
        session: ProtoSession,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        phase: str,
        request_id: Any = None,
        expect: Expect | None = None,
        timeout_s: float = 30.0,
        row: Callable[[Any], dict[str, Any]] | None = None,
        **overrides: Any,
    ) -> Call:
        """Send one request on `session`, check the reply, record the row.

        `row(result)` may return extra column values taken from a successful result.
        """
        rid = session.next_id() if request_id is None else request_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        t_send = time.time_ns()
        reply = None
        try:
            reply = await session.request(message, timeout_s)
            outcome = judge_reply(reply, rid, expect)
        except TimeoutError:
            outcome = Outcome.client_failure(CLIENT_TIMEOUT, f"no reply within {timeout_s}s")
        except (ConnectionClosed, OSError) as exc:
            outcome = Outcome.client_failure(CONNECTION_LOST, f"{type(exc).__name__}: {exc}")
        t_recv = time.time_ns()
        if row is not None and outcome.error_code is None and isinstance(reply, dict):
            # A result came back (a tool may still report its own failure inside it).
            overrides = {**row(reply.get("result")), **overrides}
        recorded = self.record(
            phase=phase,
            method=method,
            session=session.info(),
            outcome=outcome,
            t_send_ns=t_send,
            t_recv_ns=t_recv,
            params=params,
            **overrides,
        )
        return Call(reply, outcome, recorded)

    def batches(self) -> list[pa.RecordBatch]:
        """Everything recorded so far as record batches (the buffer is emptied)."""
        batch = self._buffer.drain()
        return [batch] if batch.num_rows else []


def judge_reply(reply: Any, sent_id: Any, expect: Expect | None) -> Outcome:
    """Outcome of a reply: envelope first, then error or result (checked by `expect`)."""
    problem = envelope_problem(reply, sent_id)
    if problem is not None:
        return violation(problem)
    if "error" in reply:
        error = reply["error"]
        return error_outcome(error if isinstance(error, dict) else {})
    result = reply["result"]
    if expect is not None:
        wrong = expect(result)
        if wrong is not None:
            return violation(wrong)
    return Outcome.ok(result)


def missing_fields(result: Any, names: tuple[str, ...]) -> str | None:
    """`missing_fields: a, b` when `result` lacks any of `names`."""
    if not isinstance(result, dict):
        return f"missing_fields: result is {type(result).__name__}"
    absent = [n for n in names if n not in result]
    return f"missing_fields: {', '.join(absent)}" if absent else None
