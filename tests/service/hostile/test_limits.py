"""Batches and replies inside the limits: every request of a batch is charged, replies are bounded.

Before: one frame of 3,000 pings was answered in full (the bucket charged once), 300 recalls in
one frame made an 87 MB reply, a 77-byte list_tasks returned 20 MB, and neither the number of
sockets nor /mcp had any bound.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import pytest
from websockets.exceptions import ConnectionClosed

from service.client import RpcError, WsClient
from tests.service.hostile.conftest import (
    STACK_MAX_REPLY_BYTES,
    Gates,
    Server,
    StartLight,
    post_mcp,
)


def ping_batch(n: int) -> str:
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(n)])


async def test_each_request_of_a_batch_is_charged_to_the_socket_bucket(
    start_light: StartLight,
) -> None:
    server = await start_light(rate_per_s=0.01, rate_burst=5)
    async with await WsClient.connect(server.ws, "batcher") as client:
        await client.send_raw(ping_batch(8))
        replies = await client.next_unmatched(timeout=30)
        assert len(replies) == 8
        answered = sorted(r["id"] for r in replies if "result" in r)
        refused = [r for r in replies if "error" in r]
        assert answered == [0, 1, 2, 3, 4]
        assert {(r["error"]["code"], r["error"]["data"]["reason"]) for r in refused} == {
            (-32003, "rate_limited")
        }
        assert {r["error"]["data"]["scope"] for r in refused} == {"connection"}
        assert not client.closed


async def test_each_request_of_a_batch_holds_an_in_flight_slot(
    start_light: StartLight, gates: Gates
) -> None:
    server = await start_light(max_in_flight=2)
    batch = [
        {"jsonrpc": "2.0", "id": key, "method": "gate", "params": {"key": key}}
        for key in ("a", "b", "c", "d")
    ]
    async with await WsClient.connect(server.ws, "in-flight") as client:
        await client.send_raw(json.dumps(batch))
        assert sorted(await gates.wait_started(2)) == ["a", "b"]
        assert gates.running == 2  # c and d wait for a slot
        gates.event("a").set()
        assert await gates.wait_started(1) == ["c"]
        for key in ("b", "c", "d"):
            gates.event(key).set()
        replies = await client.next_unmatched(timeout=30)
        assert sorted(r["result"]["key"] for r in replies) == ["a", "b", "c", "d"]
        assert gates.peak == 2


async def test_batch_length_limit_is_configurable(start_light: StartLight) -> None:
    server = await start_light(max_batch=3)
    async with await WsClient.connect(server.ws, "batch-len") as client:
        assert len(await client.call_raw(ping_batch(3))) == 3
        too_long = await client.call_raw(ping_batch(4))
        assert too_long["error"]["code"] == -32600
        assert too_long["error"]["data"] == {"reason": "batch_too_long", "size": 4, "limit": 3}
        assert await client.call("ping") == {}


async def test_server_wide_connection_cap(start_light: StartLight) -> None:
    server = await start_light(max_connections=2)
    first = await WsClient.connect(server.ws, "cap-a")
    second = await WsClient.connect(server.ws, "cap-b")
    try:
        with pytest.raises(ConnectionClosed) as info:
            await WsClient.connect(server.ws, "cap-c")
        assert info.value.rcvd is not None and info.value.rcvd.code == 1013
        assert "server already has 2 open connections" in info.value.rcvd.reason
        await first.close()
        # The freed slot is usable again; the survivor was never disturbed.
        async with await WsClient.connect(server.ws, "cap-c") as third:
            assert await third.call("ping") == {}
        assert await second.call("ping") == {}
    finally:
        await second.close()


async def test_agent_rate_limit_spans_sockets_and_mcp(start_light: StartLight) -> None:
    server = await start_light(agent_rate_per_s=0.01, agent_rate_burst=3)
    ping = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    as_agent = {"X-TMWS-Agent-Id": "limited"}
    async with await WsClient.connect(server.ws, "limited") as one:
        assert await one.call("ping") == {}
        assert await one.call("ping") == {}
        status, body = await post_mcp(server, ping, as_agent)
        assert status == 200 and body["result"] == {}
        status, body = await post_mcp(server, ping, as_agent)
        assert status == 429
        assert (body["error"]["code"], body["error"]["data"]["scope"]) == (-32003, "agent")
        async with await WsClient.connect(server.ws, "limited") as two:
            with pytest.raises(RpcError) as info:
                await two.call("ping")
            assert (info.value.code, info.value.data["scope"]) == (-32003, "agent")
        # Another agent has its own bucket.
        status, body = await post_mcp(server, ping, {"X-TMWS-Agent-Id": "someone-else"})
        assert status == 200


async def test_mcp_requests_in_flight_are_bounded(start_light: StartLight, gates: Gates) -> None:
    server = await start_light(http_max_in_flight=1)
    gate = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": "gate", "arguments": {"key": "held"}},
        }
    )
    first = asyncio.create_task(post_mcp(server, gate))
    assert await gates.wait_started(1) == ["held"]
    status, body = await post_mcp(server, json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}))
    assert status == 503
    assert (body["error"]["code"], body["error"]["data"]["reason"]) == (-32003, "busy")
    gates.event("held").set()
    status, body = await first
    assert status == 200 and body["result"]["structuredContent"] == {"key": "held"}
    status, _ = await post_mcp(server, json.dumps({"jsonrpc": "2.0", "id": 3, "method": "ping"}))
    assert status == 200


async def _store_big_memories(client: WsClient, n: int, size: int) -> None:
    for i in range(n):
        await client.call(
            "store_memory", {"content": f"release note {i}: " + "lorem ipsum " * (size // 12)}
        )


async def test_reply_too_large_with_a_paging_hint(stack: Server) -> None:
    agent = f"big-{uuid.uuid4().hex[:6]}"
    async with await WsClient.connect(stack.ws, agent, timeout=60) as client:
        await _store_big_memories(client, 40, 9_000)
        with pytest.raises(RpcError) as info:
            await client.call("recall_memory", {"query": "release note", "limit": 40}, timeout=60)
        error = info.value
        assert (error.code, error.reason) == (-32003, "reply_too_large")
        assert error.data["limit"] == STACK_MAX_REPLY_BYTES < error.data["size"]
        suggested = error.data["suggested_limit"]
        assert 1 <= suggested < 40 and error.data["tool"] == "recall_memory"
        fits = await client.call(
            "recall_memory", {"query": "release note", "limit": suggested}, timeout=60
        )
        assert fits["count"] == suggested
        # Over tools/call the same bound applies (a protocol error: nothing was wrong with the call).
        with pytest.raises(RpcError) as info:
            await client.call_tool("recall_memory", {"query": "release note", "limit": 40})
        assert info.value.reason == "reply_too_large"

        for _ in range(6):
            task = (await client.call("create_task", {"title": "big"}))["task"]
            await client.call(
                "update_task", {"task_id": task["task_id"], "result": {"blob": "r" * 60_000}}
            )
        with pytest.raises(RpcError) as info:
            await client.call("list_tasks", {"limit": 100})
        assert info.value.reason == "reply_too_large"
        assert "offset" in info.value.data["hint"]
        page = await client.call("list_tasks", {"limit": info.value.data["suggested_limit"]})
        assert 1 <= page["count"] < 6


async def test_batch_replies_share_one_size_budget(stack: Server) -> None:
    agent = f"bigbatch-{uuid.uuid4().hex[:6]}"
    recall = {"query": "release note", "limit": 10}
    async with await WsClient.connect(stack.ws, agent, timeout=60) as client:
        await _store_big_memories(client, 10, 9_000)
        single = json.dumps(await client.call("recall_memory", recall, timeout=60))
        per_reply = len(single.encode())
        fit = STACK_MAX_REPLY_BYTES // per_reply
        assert 1 <= fit < 5, per_reply
        batch = [
            {"jsonrpc": "2.0", "id": i, "method": "recall_memory", "params": recall}
            for i in range(5)
        ]
        await client.send_raw(json.dumps(batch))
        replies = sorted(await client.next_unmatched(timeout=120), key=lambda r: r["id"])
        ok = [r for r in replies if "result" in r]
        too_large = [r for r in replies if "error" in r]
        assert len(ok) == fit and len(too_large) == 5 - fit
        for reply in too_large:
            data = reply["error"]["data"]
            assert (reply["error"]["code"], data["reason"]) == (-32003, "reply_too_large")
            assert data["batch_remaining"] < STACK_MAX_REPLY_BYTES
        assert await client.call("ping") == {}
