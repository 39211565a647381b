"""Every corpus input, over the WebSocket and over /mcp, against the full stack.

Each gets its exact code (never -32603), and the same socket (the same endpoint) answers a
normal request afterwards.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from service.client import WsClient
from tests.service.hostile.conftest import Server, mcp_still_serves, post_mcp
from tests.service.hostile.corpus import BINARY_FRAMES, MCP_CASES, WS_CASES, Case, HttpCase


def check_error(error: dict[str, Any], code: int, field: str | None, reason: str | None) -> None:
    assert error["code"] == code, error
    assert error["code"] != -32603
    if field is not None:
        assert error["data"]["field"] == field, error
    if reason is not None:
        assert error["data"]["reason"] == reason, error


def check_reply(reply: Any, case: Case) -> None:
    assert isinstance(reply, dict), reply
    assert reply["id"] == case.reply_id, reply
    if case.code is None:
        assert "result" in reply, reply
        return
    if case.tool_error:
        result = reply["result"]
        assert result["isError"] is True, result
        check_error(result["structuredContent"]["error"], case.code, case.field, case.reason)
        return
    check_error(reply["error"], case.code, case.field, case.reason)


@pytest.mark.parametrize("case", WS_CASES, ids=[c.name for c in WS_CASES])
async def test_websocket_corpus(stack: Server, case: Case) -> None:
    async with await WsClient.connect(stack.ws, f"hostile-{case.name[:40]}") as client:
        await client.send_raw(BINARY_FRAMES.get(case.name, case.frame))
        reply = await client.next_unmatched(timeout=60)
        check_reply(reply, case)
        assert await client.call("ping", timeout=30) == {}
        assert not client.closed


@pytest.mark.parametrize("case", MCP_CASES, ids=[c.name for c in MCP_CASES])
async def test_mcp_corpus(stack: Server, case: HttpCase) -> None:
    status, body = await post_mcp(stack, case.body)
    assert status == case.status, body
    assert isinstance(body, dict), body
    if case.tool_error:
        assert body["result"]["isError"] is True, body
        check_error(body["result"]["structuredContent"]["error"], case.code or 0, case.field, None)
    else:
        check_error(body["error"], case.code or 0, case.field, None)
    await mcp_still_serves(stack)


async def test_deep_frame_does_not_lose_requests_in_flight(stack: Server) -> None:
    """Before: RecursionError killed the socket without a close frame and lost its requests."""
    async with await WsClient.connect(stack.ws, "hostile-inflight") as client:
        slow = asyncio.create_task(client.call("slow_tool", {"seconds": 0.5}, timeout=60))
        await client.send_raw("[" * 2000 + "]" * 2000)
        reply = await client.next_unmatched(timeout=60)
        assert (reply["id"], reply["error"]["code"]) == (None, -32700)
        assert (await slow)["slept_s"] >= 0.5
        assert await client.call("ping") == {}


async def test_batch_keeps_valid_replies_around_lone_surrogates(stack: Server) -> None:
    """Before: one lone surrogate in a batch lost every reply of the batch."""
    frame = (
        '[{"jsonrpc":"2.0","id":1,"method":"ping"},'
        '{"jsonrpc":"2.0","id":"\\ud800","method":"ping"},'
        '{"jsonrpc":"2.0","id":2,"method":"\\udbff"},'
        '{"jsonrpc":"2.0","id":3,"method":"store_memory","params":{"content":"\\ud800"}},'
        '{"jsonrpc":"2.0","id":4,"method":"get_agent_info","params":{}}]'
    )
    async with await WsClient.connect(stack.ws, "hostile-batch-surrogates") as client:
        await client.send_raw(frame)
        replies = await client.next_unmatched(timeout=60)
        assert isinstance(replies, list) and len(replies) == 5
        by_id = {json.dumps(r["id"]): r for r in replies}
        assert by_id["1"]["result"] == {}
        assert by_id["null"]["error"]["code"] == -32600
        assert by_id["2"]["error"]["code"] == -32600
        assert (by_id["3"]["error"]["code"], by_id["3"]["error"]["data"]["field"]) == (
            -32602,
            "content",
        )
        assert by_id["4"]["result"]["agent_id"] == "hostile-batch-surrogates"
        assert await client.call("ping") == {}


async def test_unencodable_reply_becomes_an_error_for_its_id() -> None:
    """The send path's last resort: a reply that cannot be UTF-8 is replaced, never dropped."""
    from service.jsonrpc import Dispatcher, HandlerTable

    dispatcher = Dispatcher(HandlerTable(requests={}))
    request = {"jsonrpc": "2.0", "id": 9, "method": "x"}
    text, sent = dispatcher.encode_reply(request, {"jsonrpc": "2.0", "id": 9, "result": "\ud800"})
    assert json.loads(text) == sent
    assert (sent["id"], sent["error"]["code"], sent["error"]["data"]["reason"]) == (
        9,
        -32602,
        "invalid_text",
    )
    text, sent = dispatcher.encode_reply(request, {"jsonrpc": "2.0", "id": "\udfff", "result": 1})
    assert sent["id"] is None and json.loads(text)["error"]["code"] == -32602
    batch = dispatcher.encode_batch(
        [
            (request, {"jsonrpc": "2.0", "id": 1, "result": "ok"}),
            (request, {"jsonrpc": "2.0", "id": 2, "result": "\ud800"}),
            (request, {"jsonrpc": "2.0", "id": 3, "result": float("nan")}),
        ]
    )
    assert batch is not None
    decoded = json.loads(batch)
    assert [r["id"] for r in decoded] == [1, 2, 3]
    assert decoded[0]["result"] == "ok" and decoded[1]["error"]["code"] == -32602
    assert decoded[2]["result"] is None  # NaN is not JSON: sent as null, the reply kept
