"""The WebSocket endpoint over a real socket: protocol errors, limits, concurrency, heartbeat."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from service.client import RpcError, WsClient, ws_url

StartServer = Callable[..., Awaitable[Any]]
Gates = dict[str, asyncio.Event]


async def error_of(client: WsClient, method: str, params: object = None) -> RpcError:
    with pytest.raises(RpcError) as info:
        await client.call(method, params, timeout=10)
    return info.value


async def test_welcome_then_string_and_int_ids(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        params = client.welcome["params"]
        assert client.welcome["jsonrpc"] == "2.0"
        assert params["agent_id"] == "agent-a"
        assert params["instance_id"] == "tmws-test"
        assert params["server_version"] == "2.2.0"
        assert params["session_id"] == client.session_id != ""
        for request_id in ("req-1", 17, 0, "🙂"):
            reply = await client.call_raw(
                {"jsonrpc": "2.0", "id": request_id, "method": "echo", "params": {"text": "x"}}
            )
            assert reply["id"] == request_id
            assert reply["result"]["session_id"] == client.session_id


async def test_every_error_code_over_the_socket(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        parse = await client.call_raw('{"jsonrpc": "2.0", "id": 1, "method": ')
        assert (parse["id"], parse["error"]["code"]) == (None, -32700)
        wrong = await client.call_raw({"jsonrpc": "1.0", "id": "w", "method": "ping"})
        assert (wrong["id"], wrong["error"]["code"]) == ("w", -32600)
        no_method = await client.call_raw({"jsonrpc": "2.0", "id": "m", "method": 5})
        assert no_method["error"]["code"] == -32600
        bad_id = await client.call_raw({"jsonrpc": "2.0", "id": [1], "method": "ping"})
        assert (bad_id["id"], bad_id["error"]["code"]) == (None, -32600)

        unknown = await error_of(client, "no_such_method")
        assert unknown.code == -32601 and "no_such_method" in unknown.message
        bad = await error_of(client, "echo", {"text": "x", "n": "many"})
        assert bad.code == -32602 and bad.data["field"] == "n" and "n" in bad.message
        missing = await error_of(client, "echo", {})
        assert missing.code == -32602 and missing.data["field"] == "text"
        internal = await error_of(client, "fail", {"kind": "bug"})
        assert internal.code == -32603
        assert "secret internals" not in internal.message
        assert "ZeroDivisionError" not in json.dumps(internal.data)

        expected = {
            "not_found": (-32005, "not_found"),
            "timeout": (-32001, "timeout"),
            "unavailable": (-32002, "database_unavailable"),
            "tool_failed": (-32010, "tool_failed"),
        }
        for kind, (code, reason) in expected.items():
            err = await error_of(client, "fail", {"kind": kind})
            assert (err.code, err.reason) == (code, reason)
            result = await client.call_tool("fail", {"kind": kind})
            assert result["isError"] is True
            assert result["structuredContent"]["error"]["code"] == code
        # The socket survived all of it.
        assert await client.call("ping") == {}


async def test_binary_frames_and_garbage_do_not_crash(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        reply = await client.call_raw(b"\xff\xfe\x00garbage")
        assert reply["error"]["code"] == -32700
        reply = await client.call_raw(b'{"jsonrpc":"2.0","id":"bin","method":"ping"}')
        assert reply == {"jsonrpc": "2.0", "id": "bin", "result": {}}
        reply = await client.call_raw("42")
        assert reply["error"]["code"] == -32600
        reply = await client.call_raw("[]")
        assert (reply["id"], reply["error"]["code"]) == (None, -32600)
        assert await client.call("ping") == {}


async def test_take_unmatched_returns_unclaimed_replies(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        assert client.take_unmatched() == []
        await client.send_raw("not json")
        await client.send_raw(json.dumps({"jsonrpc": "2.0", "id": [1], "method": "ping"}))
        rid = client.next_id()
        # Replies come in order: once this one is here, both unclaimed replies have arrived.
        barrier = await client.call_raw({"jsonrpc": "2.0", "id": rid, "method": "ping"})
        assert barrier["id"] == rid and client.next_id() == rid + 1
        taken = client.take_unmatched()
        assert [(m["id"], m["error"]["code"]) for m in taken] == [(None, -32700), (None, -32600)]
        assert client.take_unmatched() == []


async def test_notifications_get_nothing(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        await client.notify("ping")
        await client.notify("echo", {"text": "quiet"})
        await client.notify("fail", {"kind": "bug"})
        await client.notify("notifications/initialized")
        await client.notify("unknown/notification")
        assert await client.call("ping") == {}
        # Bounded wait for something that must not arrive.
        with pytest.raises(TimeoutError):
            await client.next_unmatched(timeout=0.3)
        assert not client.notifications


async def test_batches_over_the_socket(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        batch = [
            {"jsonrpc": "2.0", "id": "a", "method": "echo", "params": {"text": "A"}},
            {"jsonrpc": "2.0", "method": "echo", "params": {"text": "note"}},
            {"jsonrpc": "2.0", "id": 2, "method": "nope"},
            {"jsonrpc": "2.0", "id": 3, "method": "tools/list"},
        ]
        reply = await client.call_raw(batch)
        assert isinstance(reply, list) and len(reply) == 3
        by_id = {r["id"]: r for r in reply}
        assert by_id["a"]["result"]["text"] == "A"
        assert by_id[2]["error"]["code"] == -32601
        assert {t["name"] for t in by_id[3]["result"]["tools"]} == {"echo", "fail", "gate"}
        await client.send_raw(json.dumps([{"jsonrpc": "2.0", "method": "ping"}]))
        assert await client.call("ping") == {}
        with pytest.raises(TimeoutError):
            await client.next_unmatched(timeout=0.3)


async def test_mcp_handshake_over_the_socket(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        init = await client.call(
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}},
        )
        assert init["protocolVersion"] == "2025-06-18"
        assert init["serverInfo"] == {"name": "tmws", "version": "2.2.0"}
        await client.notify("notifications/initialized")
        tools = (await client.call("tools/list"))["tools"]
        echo = next(t for t in tools if t["name"] == "echo")
        assert echo["inputSchema"]["required"] == ["text"]
        result = await client.call_tool("echo", {"text": "hi", "n": 2})
        assert result["isError"] is False
        assert result["structuredContent"]["text"] == "hihi"
        assert json.loads(result["content"][0]["text"])["text"] == "hihi"


async def test_responses_out_of_order_are_matched_by_id(
    start_server: StartServer, gates: Gates
) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as client:
        gates["slow"] = asyncio.Event()
        slow = asyncio.create_task(client.call("gate", {"key": "slow"}))
        fast = await client.call("echo", {"text": "fast"})  # answered while `slow` still waits
        assert fast["text"] == "fast"
        assert not slow.done()
        gates["slow"].set()
        assert await slow == {"key": "slow"}

        # Many concurrent calls on one socket, each gets its own answer.
        texts = [f"t{i}" for i in range(200)]
        results = await asyncio.gather(*(client.call("echo", {"text": t}) for t in texts))
        assert [r["text"] for r in results] == texts


async def test_sessions_are_isolated_per_connection(start_server: StartServer) -> None:
    server = await start_server()
    async with (
        await WsClient.connect(server.ws, "agent-a") as a1,
        await WsClient.connect(server.ws, "agent-a") as a2,
        await WsClient.connect(server.ws, "agent-b") as b,
    ):
        assert len({a1.session_id, a2.session_id, b.session_id}) == 3
        results = await asyncio.gather(
            *(c.call("echo", {"text": c.session_id}) for c in (a1, a2, b) for _ in range(20))
        )
        for r in results:
            assert r["text"] == r["session_id"]  # no crosstalk between sockets
        assert (await b.call("echo", {"text": "x"}))["agent_id"] == "agent-b"


async def test_missing_or_bad_agent_id_is_refused_with_a_reason(
    start_server: StartServer,
) -> None:
    server = await start_server()
    async with connect(f"ws://127.0.0.1:{server.port}/ws/mcp") as ws:
        with pytest.raises(ConnectionClosed) as info:
            await ws.recv()
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008
    assert "agent_id is required" in info.value.rcvd.reason
    with pytest.raises(ConnectionClosed) as info:
        await WsClient.connect(server.ws, "has space")
    assert info.value.rcvd is not None
    assert info.value.rcvd.code == 1008 and "invalid" in info.value.rcvd.reason


async def test_eleventh_connection_of_an_agent_is_refused(start_server: StartServer) -> None:
    server = await start_server()
    clients = [await WsClient.connect(server.ws, "agent-x") for _ in range(10)]
    try:
        with pytest.raises(ConnectionClosed) as info:
            await WsClient.connect(server.ws, "agent-x")
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1013
        assert (
            info.value.rcvd.reason == "agent 'agent-x' already has 10 open connections (limit 10)"
        )
        # Other agents are unaffected, and all ten sockets still work.
        async with await WsClient.connect(server.ws, "agent-y") as other:
            assert await other.call("ping") == {}
        assert await asyncio.gather(*(c.call("ping") for c in clients)) == [{}] * 10

        # Closing one frees a slot.
        sessions = server.services.sessions
        freed = asyncio.Event()
        sessions.listeners.append(
            lambda agent, n: freed.set() if agent == "agent-x" and n == 9 else None
        )
        await clients.pop().close()
        async with asyncio.timeout(10):
            await freed.wait()
        clients.append(await WsClient.connect(server.ws, "agent-x"))
        assert sessions.count("agent-x") == 10
    finally:
        await asyncio.gather(*(c.close() for c in clients))


async def test_oversized_frame_gets_an_error_and_the_socket_stays_usable(
    start_server: StartServer,
) -> None:
    server = await start_server(max_frame_bytes=1000)
    async with await WsClient.connect(server.ws, "agent-a") as client:
        big = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": {"text": "x" * 2000}}
        )
        reply = await client.call_raw(big)  # a string: the reply cannot be matched by id
        assert reply["id"] is None
        assert reply["error"]["code"] == -32003
        assert reply["error"]["data"]["reason"] == "frame_too_large"
        assert reply["error"]["data"]["limit"] == 1000
        assert await client.call("echo", {"text": "small"}) == {
            "text": "small",
            "agent_id": "agent-a",
            "session_id": client.session_id,
        }
        # Far beyond the limit, the protocol layer drops the connection (1009) before the app.
        with pytest.raises(ConnectionClosed):
            await client.call_raw("y" * 10_000, timeout=10)
        closed = await client.wait_closed(timeout=10)
        assert closed.rcvd is not None and closed.rcvd.code == 1009


async def test_rate_limit_answers_with_an_error_not_a_close(start_server: StartServer) -> None:
    server = await start_server(rate_per_s=0.5, rate_burst=3)
    async with await WsClient.connect(server.ws, "agent-a") as client:
        outcomes = await asyncio.gather(
            *(client.call("ping") for _ in range(10)), return_exceptions=True
        )
        ok = [o for o in outcomes if o == {}]
        limited = [o for o in outcomes if isinstance(o, RpcError)]
        assert len(ok) + len(limited) == 10
        assert 3 <= len(ok) <= 4  # the burst, plus at most one refilled token
        assert all(e.code == -32003 and e.reason == "rate_limited" for e in limited)
        assert "retry_after_s" in limited[0].data
        assert not client.closed


async def test_idle_connection_is_closed_but_not_while_busy(
    start_server: StartServer, gates: Gates
) -> None:
    server = await start_server(idle_timeout_s=0.3)
    async with await WsClient.connect(server.ws, "agent-a") as client:
        gates["busy"] = asyncio.Event()
        pending = asyncio.create_task(client.call("gate", {"key": "busy"}))
        # A request in flight keeps the connection open past the idle timeout.
        with pytest.raises(TimeoutError):
            await client.wait_closed(timeout=1.0)
        gates["busy"].set()
        assert await pending == {"key": "busy"}
        closed = await client.wait_closed(timeout=10)
        assert closed.rcvd is not None
        assert closed.rcvd.code == 1001
        assert "idle" in closed.rcvd.reason
        with pytest.raises(ConnectionClosed):
            await client.call("ping")


async def test_pending_calls_fail_when_the_socket_closes(
    start_server: StartServer, gates: Gates
) -> None:
    server = await start_server()
    client = await WsClient.connect(server.ws, "agent-a")
    gates["never"] = asyncio.Event()
    pending = [asyncio.create_task(client.call("gate", {"key": "never"})) for _ in range(3)]
    await client.call("ping")  # the gate requests are on the server by now
    await client.close()
    for task in pending:
        with pytest.raises(ConnectionClosed):
            await task
    freed = asyncio.Event()
    sessions = server.services.sessions
    sessions.listeners.append(lambda agent, n: freed.set() if n == 0 else None)
    if sessions.count("agent-a"):
        async with asyncio.timeout(10):
            await freed.wait()
    assert sessions.count() == 0


def test_ws_url_building() -> None:
    assert ws_url("ws://h:1", "a") == "ws://h:1/ws/mcp?agent_id=a"
    assert ws_url("ws://h:1/ws/mcp", "a b", "t") == "ws://h:1/ws/mcp?agent_id=a+b&token=t"


@pytest.mark.parametrize("enabled", [False, True])
async def test_permessage_deflate_only_when_configured(
    start_server: StartServer, enabled: bool
) -> None:
    # The client offers deflate (websockets' default); the server takes it only when asked to.
    server = await start_server(ws_compression=enabled)
    async with connect(f"{server.ws}?agent_id=agent-z") as ws:
        await ws.recv()  # welcome
        assert ws.response is not None
        negotiated = ws.response.headers.get("Sec-WebSocket-Extensions") or ""
        assert ("permessage-deflate" in negotiated) is enabled
