"""[2.1] Pattern execution via WebSocket MCP: protocol compliance on every instance.

On each of the run's instances the driver connects, reads the welcome, sends the plan's exact
`execute_pattern` message, checks the response envelope (jsonrpc 2.0, same id of the same JSON
type) and result fields, provokes each standard error (-32700, -32601, -32602 naming the field,
-32600), uses string and integer ids, runs MCP `initialize` / `tools/list` / `tools/call` over the
socket, checks that two concurrent sessions reusing the same ids each get only their own replies,
and lists and calls tools with the official `mcp` SDK client over Streamable HTTP at `/mcp`.
The swarms meanwhile send the plan message from every agent. Every request is one history row.
"""

import experiments  # noqa: F401  (checks the dependencies before anything imports them)

# isort: split
import argparse
import asyncio
import json
import sys
import time
from typing import Any

from actors.recorder import CLIENT_TIMEOUT, Outcome, SessionInfo
from analysis import checks, criteria
from analysis.checks import Evidence
from cluster.run import ClusterRun, RunResult
from experiments.runner import DRIVER_BATCHES, Experiment, main
from experiments.runner import Outcome as Verdict
from experiments.support.driver import (
    DriverLog,
    judge_reply,
    missing_fields,
    session_info,
    violation,
)
from experiments.support.instances import scale_name, sized
from experiments.support.rows import (
    all_succeeded,
    error_code_criterion,
    reasons_containing,
    where,
    where_in,
)
from service.client import WsClient

SECTION = "2.1"
PLAN_MESSAGE: dict[str, Any] = {
    "jsonrpc": "2.0",
    "id": "pattern-exec-1",
    "method": "execute_pattern",
    "params": {"query": "execute tool test", "execution_mode": "balanced", "use_cache": True},
}
RESULT_FIELDS = ("success", "pattern_name", "execution_time_ms", "tokens_used", "cache_hit")
EXISTING_TOOLS = ("store_memory", "recall_memory", "create_task", "update_task", "execute_workflow")
#: (row key, raw frame or message, expected code, reason text the error must carry)
ERROR_PROBES: tuple[tuple[str, Any, int, str | None], ...] = (
    ("malformed_json", '{"jsonrpc": "2.0", "id": 1, "method": ', -32700, None),
    ("unknown_method", {"method": "no_such_method", "params": {}}, -32601, None),
    (
        "bad_params_mode",
        {"method": "execute_pattern", "params": {"query": "x", "execution_mode": "warp"}},
        -32602,
        "field=execution_mode",
    ),
    ("bad_params_missing", {"method": "execute_pattern", "params": {}}, -32602, "field=query"),
    ("invalid_request_version", {"jsonrpc": "1.0", "method": "ping"}, -32600, None),
    ("invalid_request_not_object", "42", -32600, None),
)
#: Phases of the driver's own requests (the swarms' phase is "swarm-plan-message").
DRIVER_PHASES = ("protocol", "errors", "mcp_socket", "isolation", "isolation-barrier")
SWARM_REQUESTS = {"ci": 1, "laptop": 3, "cloud": 5}
ISOLATION_REQUESTS = {"ci": 4, "laptop": 10, "cloud": 20}


def check_plan_result(result: Any) -> str | None:
    """The plan's expected result: the fields, success, and the execute_tool pattern."""
    missing = missing_fields(result, RESULT_FIELDS)
    if missing:
        return missing
    if result["success"] is not True:
        return f"unexpected: success={result['success']!r}"
    if result["pattern_name"] != "execute_tool":
        return f"unexpected: pattern_name={result['pattern_name']!r}"
    return None


class McpComplianceExperiment(Experiment):
    scenario = "mcp_compliance"
    section = SECTION
    title = "Pattern execution via WebSocket MCP: protocol compliance"

    def drive(self, run: ClusterRun, args: argparse.Namespace) -> dict[str, Any]:
        scale = scale_name(run)
        workload = {
            "mix": [{"method": "execute_pattern", "params": dict(PLAN_MESSAGE["params"])}],
            "requests_per_agent": sized(SWARM_REQUESTS, scale),
            "request_timeout_s": 20,
        }
        handle = run.start_phase("swarm-plan-message", workload)
        log = DriverLog(run.run_id, self.scenario)
        facts = asyncio.run(self._probe_all(run, log, sized(ISOLATION_REQUESTS, scale)))
        handle.wait()
        facts[DRIVER_BATCHES] = log.batches()
        return facts

    async def _probe_all(self, run: ClusterRun, log: DriverLog, n_iso: int) -> dict[str, Any]:
        infos = run.instance_infos
        per_instance = await asyncio.gather(
            *(
                self._probe_instance(run.run_id, i, info.ws_url, log, n_iso)
                for i, info in enumerate(infos)
            ),
            *(self._probe_http(run.run_id, i, info.url, log) for i, info in enumerate(infos)),
        )
        return {"instances": [p for p in per_instance if p]}

    async def _probe_instance(
        self, run_id: str, index: int, url: str, log: DriverLog, n_iso: int
    ) -> dict[str, Any]:
        agent = f"{run_id}-mcp-{index}"
        t0 = time.time_ns()
        session = await WsClient.connect(url, agent)
        params = session.welcome.get("params") or {}
        welcome_ok = all(params.get(k) for k in ("session_id", "agent_id", "instance_id"))
        log.record(
            phase="protocol",
            method="welcome",
            session=session_info(session),
            outcome=Outcome.ok(params) if welcome_ok else violation("welcome lacks session ids"),
            t_send_ns=t0,
            t_recv_ns=time.time_ns(),
            key="welcome",
            op="other",
        )
        try:
            await self._plan_messages(session, log)
            await self._errors(session, log)
            tools = await self._mcp_socket(session, log)
        finally:
            await session.close()
        await self._isolation(url, f"{agent}-iso", log, n_iso)
        return {"instance": session.instance_id, "tools_listed": tools}

    async def _plan_messages(self, session: WsClient, log: DriverLog) -> None:
        # The plan's exact message (string id), then the same request with an integer id.
        for key, rid in (("plan_message", "pattern-exec-1"), ("integer_id", 7)):
            message = {**PLAN_MESSAGE, "id": rid}
            t_send = time.time_ns()
            try:
                reply = await session.call_raw(json.loads(json.dumps(message)), timeout=20)
                outcome = judge_reply(reply, rid, check_plan_result)
            except TimeoutError:
                reply = None
                outcome = violation(f"no reply carrying id {rid!r}", CLIENT_TIMEOUT)
            result = (reply or {}).get("result") or {}
            log.record(
                phase="protocol",
                method="execute_pattern",
                session=session_info(session),
                outcome=outcome if reply is None else _with_result(outcome, result),
                t_send_ns=t_send,
                t_recv_ns=time.time_ns(),
                params=message["params"],
                key=key,
            )

    async def _errors(self, session: WsClient, log: DriverLog) -> None:
        for key, probe, _code, _reason in ERROR_PROBES:
            t_send = time.time_ns()
            if isinstance(probe, str):
                # Unreadable frames can only be answered with id null: no call claims the reply.
                try:
                    reply = await session.call_raw(probe, timeout=10)
                    outcome = judge_reply(reply, None, None)
                except TimeoutError:
                    outcome = violation("no reply to a malformed frame", CLIENT_TIMEOUT)
                method = "raw_frame"
            else:
                rid = f"err-{key}"
                message = {"jsonrpc": "2.0", "id": rid, **probe}
                try:
                    reply = await session.call_raw(message, timeout=10)
                    outcome = judge_reply(reply, rid, None)
                except TimeoutError:
                    outcome = violation(f"no reply carrying id {rid!r}", CLIENT_TIMEOUT)
                method = str(probe.get("method"))
            log.record(
                phase="errors",
                method=method,
                session=session_info(session),
                outcome=outcome,
                t_send_ns=t_send,
                t_recv_ns=time.time_ns(),
                key=key,
                op="other",
            )

    async def _mcp_socket(self, session: WsClient, log: DriverLog) -> list[str]:
        init = await log.call(
            session,
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e3"}},
            phase="mcp_socket",
            key="initialize",
            op="other",
            expect=lambda r: missing_fields(r, ("protocolVersion", "capabilities", "serverInfo")),
        )
        if init.ok:
            await session.notify("notifications/initialized")
        listed = await log.call(
            session,
            "tools/list",
            phase="mcp_socket",
            key="tools/list",
            op="other",
            expect=_lists_tools,
        )
        await log.call(
            session,
            "tools/call",
            {"name": "execute_pattern", "arguments": dict(PLAN_MESSAGE["params"])},
            phase="mcp_socket",
            key="tools/call",
            op="other",
            expect=lambda r: (
                check_plan_result((r or {}).get("structuredContent"))
                or (None if r.get("isError") is False else "isError is not false")
            ),
        )
        tools = (listed.result or {}).get("tools") or []
        return sorted(t.get("name") for t in tools if isinstance(t, dict))

    async def _isolation(self, url: str, agent: str, log: DriverLog, n: int) -> None:
        """Two sessions reuse the same ids concurrently; each must get only its own replies."""
        a, b = await asyncio.gather(WsClient.connect(url, agent), WsClient.connect(url, agent))
        try:
            await asyncio.gather(
                *(self._isolated(s, tag, log, n) for s, tag in ((a, "A"), (b, "B")))
            )
        finally:
            await asyncio.gather(a.close(), b.close())

    async def _isolated(self, session: WsClient, tag: str, log: DriverLog, n: int) -> None:
        own = session.session_id

        def own_session(r: Any) -> str | None:
            got = (r or {}).get("session_id")
            return None if got == own else f"crosstalk: reply for session {got} on {own}"

        async def one(k: int) -> None:
            query = f"run the test tool for session {tag} request {k} of {own[:8]}"

            def own_probe(r: Any) -> str | None:
                probe = (((r or {}).get("result") or {}).get("output") or {}).get("probe")
                return None if probe == query else f"crosstalk: probe {probe!r} answered {query!r}"

            # Both sessions use ids 1..n (string ids on one half, integers on the other).
            await log.call(
                session, "get_agent_info", {}, phase="isolation", request_id=k, key="session_id",
                expect=own_session,
            )  # fmt: skip
            await log.call(
                session, "execute_pattern", {"query": query, "use_cache": False},
                phase="isolation", request_id=f"q{k}", key="probe", expect=own_probe,
            )  # fmt: skip

        await asyncio.gather(*(one(k) for k in range(1, n + 1)))
        # Barrier: once the ping is answered, any frame nobody asked for has already arrived.
        barrier = await log.call(session, "ping", {}, phase="isolation-barrier", key="barrier")
        stray = session.take_unmatched()
        if stray:
            log.record(
                phase="isolation-barrier",
                method="unexpected_frames",
                session=session_info(session),
                outcome=violation(f"crosstalk: {len(stray)} frames nobody asked for"),
                t_send_ns=barrier.row["t_send_ns"],
                t_recv_ns=barrier.row["t_recv_ns"],
                key="unexpected",
                op="other",
            )

    async def _probe_http(self, run_id: str, index: int, url: str, log: DriverLog) -> None:
        """The official SDK client over Streamable HTTP: list tools, call execute_pattern."""
        from mcp import Client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        agent = f"{run_id}-http-{index}"
        session = SessionInfo(agent)
        http = create_mcp_http_client(headers={"X-TMWS-Agent-Id": agent})
        t_send = time.time_ns()
        try:
            async with (
                http,
                Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
            ):
                listed = await client.list_tools()
                names = {t.name for t in listed.tools}
                outcome = (
                    Outcome.ok({"count": len(names)})
                    if {"execute_pattern", *EXISTING_TOOLS} <= names
                    else violation(
                        f"missing_tools: {sorted({'execute_pattern', *EXISTING_TOOLS} - names)}"
                    )
                )
                log.record(phase="mcp_http", method="mcp_http:tools/list", session=session,
                           outcome=outcome, t_send_ns=t_send, t_recv_ns=time.time_ns(),
                           key="tools/list", op="other")  # fmt: skip
                t_send = time.time_ns()
                called = await client.call_tool("execute_pattern", dict(PLAN_MESSAGE["params"]))
                wrong = check_plan_result(called.structured_content) or (
                    "isError is true" if called.is_error else None
                )
                outcome = violation(wrong) if wrong else Outcome.ok(called.structured_content or {})
                log.record(phase="mcp_http", method="mcp_http:tools/call", session=session,
                           outcome=outcome, t_send_ns=t_send, t_recv_ns=time.time_ns(),
                           key="tools/call", op="other")  # fmt: skip
        except Exception as exc:  # any SDK/transport failure is the row's outcome
            log.record(phase="mcp_http", method="mcp_http:session", session=session,
                       outcome=violation(f"sdk_error: {type(exc).__name__}: {exc}"),
                       t_send_ns=t_send, t_recv_ns=time.time_ns(), key="session", op="other")  # fmt: skip

    def check(self, result: RunResult, facts: dict[str, Any], args: argparse.Namespace) -> Verdict:
        table = result.table
        protocol = where(table, phase="protocol")
        replies = where_in(table, "phase", DRIVER_PHASES)
        found = []
        for key, _probe, code, reason in ERROR_PROBES:
            found.append(
                error_code_criterion(
                    f"error_{key}",
                    where(table, phase="errors", key=key),
                    code,
                    reason_contains=reason,
                    section=SECTION,
                    description=f"{key} is answered with JSON-RPC error {code}",
                )
            )
        swarm = where(table, phase="swarm-plan-message")
        found += [
            checks.equals(
                "jsonrpc_compliance",
                float(reasons_containing(replies, "bad_envelope").num_rows),
                0,
                evidence=Evidence("driver replies checked", replies.num_rows, 1),
                description=f"replies that are not valid JSON-RPC 2.0 responses (of {replies.num_rows})",
                section=SECTION,
            ),
            all_succeeded(
                "request_response_id_matching",
                where(protocol, method="execute_pattern"),
                section=SECTION,
                minimum=2,
                description="string id 'pattern-exec-1' and integer id 7 each answered with the same id and type",
            ),
            all_succeeded(
                "plan_response_fields",
                where(protocol, key="plan_message"),
                section=SECTION,
                description="plan message result: success, pattern_name=execute_tool, execution_time_ms, tokens_used, cache_hit",
            ),
            all_succeeded(
                "welcome_received",
                where(protocol, key="welcome"),
                section=SECTION,
                description="each connection receives a welcome with session, agent and instance ids",
            ),
            all_succeeded(
                "session_isolation",
                where_in(table, "phase", ("isolation", "isolation-barrier")),
                section=SECTION,
                minimum=4,
                description="two sessions reusing ids concurrently get only their own replies",
            ),
            all_succeeded(
                "mcp_over_websocket",
                where(table, phase="mcp_socket"),
                section=SECTION,
                minimum=3,
                description="MCP initialize, tools/list and tools/call over the socket",
            ),
            all_succeeded(
                "mcp_streamable_http_sdk",
                where(table, phase="mcp_http"),
                section=SECTION,
                minimum=2,
                description="official mcp SDK client over Streamable HTTP lists tools and calls execute_pattern",
            ),
            criteria.success_rate_criterion(swarm, 95.0, section=SECTION),
        ]
        return Verdict(found, metrics={"swarm_plan_requests": swarm.num_rows})


def _lists_tools(result: Any) -> str | None:
    names = {t.get("name") for t in (result or {}).get("tools", []) if isinstance(t, dict)}
    missing = sorted({"execute_pattern", *EXISTING_TOOLS} - names)
    return f"missing_tools: {missing}" if missing else None


def _with_result(outcome: Outcome, result: dict[str, Any]) -> Outcome:
    """Keep the result's fields on the row (pattern, tokens, cache) whatever the verdict."""
    return Outcome(
        result=result,
        error_code=outcome.error_code,
        error_reason=outcome.error_reason,
        error_message=outcome.error_message,
    )


EXPERIMENT = McpComplianceExperiment()

if __name__ == "__main__":
    sys.exit(main(EXPERIMENT))
