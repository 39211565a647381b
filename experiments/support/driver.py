"""Driver-side sessions whose every request becomes one history row, drained for the runner.

Two ways to send from the driver, both recording into one `DriverLog` whose `batches()` go into
`facts[runner.DRIVER_BATCHES]`:

- `DriverAgents`: the swarms' own `SimAgent`s, for an exact shape the swarms do not give (100
  requests one after another from one agent, 50 released together at one pool). Their rows are
  exactly swarm rows (`actors.recorder.Recorder`).
- `DriverLog.call` on a `service.client.WsClient`: one raw JSON-RPC request whose reply is checked
  (envelope, the id of the same JSON type, the result through an `expect` callback). A reply that
  breaks the protocol or fails `expect` becomes a failed row with the client-side code
  `CLIENT_ERROR` and a reason saying what was wrong, so checks read protocol violations from rows.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from websockets.exceptions import ConnectionClosed

from actors.agents import Directory, Endpoint, SimAgent, default_connector
from actors.recorder import (
    CLIENT_ERROR,
    CLIENT_TIMEOUT,
    CONNECTION_LOST,
    Outcome,
    Recorder,
    SessionInfo,
    build_row,
)
from actors.workload import MethodWeight, RequestSpec, build_request, op_for_method
from analysis.schema import HistoryBuffer
from service.client import WsClient

#: Checks a successful result; returns what is wrong, or None when it is as expected.
Expect = Callable[[Any], str | None]


def session_info(client: WsClient, node_id: str | None = None) -> SessionInfo:
    """The row identity of a request sent on `client`."""
    return SessionInfo(client.agent_id, client.session_id, client.instance_id, node_id)


def _id_key(request_id: Any) -> tuple[str, Any]:
    """Ids match only with the same JSON type: the string "1" is not the integer 1."""
    return ("null", None) if request_id is None else (type(request_id).__name__, request_id)


def envelope_problem(reply: Any, sent_id: Any) -> str | None:
    """What makes `reply` an invalid JSON-RPC 2.0 response to a request with `sent_id`."""
    if not isinstance(reply, dict):
        return f"bad_envelope: reply is {type(reply).__name__}, not an object"
    if reply.get("jsonrpc") != "2.0":
        return f"bad_envelope: jsonrpc={reply.get('jsonrpc')!r}"
    if _id_key(reply.get("id")) != _id_key(sent_id):
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
    applied = data.get("applied")
    return Outcome(
        error_code=int(error.get("code", 0)),
        error_reason=reason,
        error_message=str(error.get("message", "")),
        applied=applied if isinstance(applied, bool) else None,
    )


def violation(text: str, code: int = CLIENT_ERROR) -> Outcome:
    """Something the driver saw that is wrong (a reply's protocol or content, a missing reply)."""
    return Outcome(error_code=code, error_reason=text[:300], error_message=text)


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


class DriverLog:
    """Every driver request as one history row, drained as Arrow record batches.

    `recorder` takes the rows of `DriverAgents` (exactly as a swarm records them); `record` and
    `call` build rows with `actors.recorder.build_row` and may set columns directly (key, op,
    route, versions...), keeping them in `rows` too.
    """

    def __init__(self, run_id: str, scenario: str) -> None:
        self.run_id = run_id
        self.scenario = scenario
        # The driver's clock is the reference every swarm's offset is measured against.
        self.recorder = Recorder(run_id, scenario, clock_offset_ns=0, clock_uncertainty_ns=0)
        self.rows: list[dict[str, Any]] = []
        self._buffer = HistoryBuffer()

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
        **columns: Any,
    ) -> dict[str, Any]:
        """Append one row; `columns` set columns directly (key, op, version_seen, route...)."""
        spec = RequestSpec(
            method=method,
            params=params or {},
            op=columns.pop("op", op_for_method(method)),
            namespace=columns.pop("namespace", session.agent_id),
            key=columns.pop("key", None),
            pattern_name=columns.pop("pattern_name", None),
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
        row.update(clock_offset_ns=0, clock_uncertainty_ns=0)
        row.update(columns)
        self._buffer.append(**row)
        self.rows.append(row)
        return row

    async def call(
        self,
        client: WsClient,
        method: str,
        params: dict[str, Any] | None = None,
        *,
        phase: str,
        request_id: Any = None,
        expect: Expect | None = None,
        timeout_s: float = 30.0,
        row: Callable[[Any], dict[str, Any]] | None = None,
        **columns: Any,
    ) -> Call:
        """Send one request on `client`, check the reply, record the row.

        `row(result)` may return extra column values taken from a successful result.
        """
        rid = client.next_id() if request_id is None else request_id
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        t_send = time.time_ns()
        reply = None
        try:
            reply = await client.call_raw(message, timeout=timeout_s)
            outcome = judge_reply(reply, rid, expect)
        except TimeoutError:
            outcome = Outcome.client_failure(CLIENT_TIMEOUT, f"no reply within {timeout_s}s")
        except (ConnectionClosed, OSError) as exc:
            outcome = Outcome.client_failure(CONNECTION_LOST, f"{type(exc).__name__}: {exc}")
        t_recv = time.time_ns()
        if row is not None and outcome.error_code is None and isinstance(reply, dict):
            # A result came back (a tool may still report its own failure inside it).
            columns = {**row(reply.get("result")), **columns}
        recorded = self.record(
            phase=phase,
            method=method,
            session=session_info(client),
            outcome=outcome,
            t_send_ns=t_send,
            t_recv_ns=t_recv,
            params=params,
            **columns,
        )
        return Call(reply, outcome, recorded)

    def batches(self) -> list[pa.RecordBatch]:
        """Everything recorded so far as record batches (the buffers are emptied)."""
        drained = [self.recorder.drain().batch, self._buffer.drain()]
        return [batch for batch in drained if batch.num_rows]


def _pattern_request(agent_id: str, query: str, **params: Any) -> RequestSpec:
    """An `execute_pattern` request (balanced, cache on unless `params` say otherwise)."""
    return build_request(MethodWeight("execute_pattern", params=params), agent_id, 0, query)


class DriverAgents:
    """A few `SimAgent`s on the driver sending `execute_pattern`, recording into `log`.

    Use as `async with DriverAgents(...) as agents:`: every session opens before timing starts
    and closes at the end.
    """

    def __init__(
        self,
        log: DriverLog,
        endpoints: Sequence[Endpoint],
        agent_ids: Sequence[str],
        homes: Sequence[int] | None = None,
    ) -> None:
        directory = Directory(endpoints)
        homes = list(homes) if homes is not None else list(range(len(agent_ids)))
        self.agents = [
            SimAgent(aid, home, directory, default_connector, log.recorder)
            for aid, home in zip(agent_ids, homes, strict=True)
        ]

    async def __aenter__(self) -> DriverAgents:
        try:
            await self.connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def connect(self, timeout_s: float = 30.0) -> int:
        """Open every session; returns how many opened."""
        async with asyncio.timeout(timeout_s):
            opened = await asyncio.gather(*(a.connect() for a in self.agents))
        return sum(opened)

    async def sequential(
        self,
        phase: str,
        queries: Sequence[str],
        timeout_s: float,
        agent: int = 0,
        **params: Any,
    ) -> float:
        """One pattern per query, one after another from one agent; returns the wall time in s."""
        sender = self.agents[agent]
        started = time.perf_counter()
        for query in queries:
            await sender.send(_pattern_request(sender.agent_id, query, **params), phase, timeout_s)
        return time.perf_counter() - started

    async def burst(
        self, phase: str, queries: Sequence[str], timeout_s: float, **params: Any
    ) -> float:
        """One pattern per query, all released at once (query i from agent i mod n); wall time.

        All sends share one intended send time, so a request that queues behind others (in the
        pool, in the event loop) is charged its wait.
        """
        started = time.perf_counter()
        intended = time.time_ns()
        senders = [self.agents[i % len(self.agents)] for i in range(len(queries))]
        await asyncio.gather(
            *(
                a.send(_pattern_request(a.agent_id, q, **params), phase, timeout_s, intended)
                for a, q in zip(senders, queries, strict=True)
            )
        )
        return time.perf_counter() - started

    async def close(self) -> None:
        """Close every agent's session."""
        await asyncio.gather(*(a.close() for a in self.agents), return_exceptions=True)
