"""The JSON-RPC dispatcher with no sockets: messages in, messages out."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from service.config import Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.errors import ExecutionTimeout, NotFound
from service.jsonrpc import Dispatcher, HandlerTable, JsonRpcLimits, Paging
from service.mcp_methods import LATEST_PROTOCOL_VERSION, McpMethods
from service.tools.registry import ToolArgs, ToolRegistry

SERVER_INFO = {"name": "tmws", "version": "2.2.0"}


class AddArgs(ToolArgs):
    a: int
    b: int


class KindArgs(ToolArgs):
    kind: str


def _tools() -> ToolRegistry:
    tools = ToolRegistry()

    @tools.tool("add", "a + b", AddArgs)
    async def add(ctx: CallContext, args: AddArgs) -> dict[str, Any]:
        return {"sum": args.a + args.b, "agent": ctx.agent_id}

    @tools.tool("boom", "fails", KindArgs)
    async def boom(ctx: CallContext, args: KindArgs) -> dict[str, Any]:
        if args.kind == "not_found":
            raise NotFound("task 7 does not exist", {"task_id": 7})
        if args.kind == "timeout":
            raise ExecutionTimeout("took too long")
        raise KeyError("internal detail")

    return tools


def _dispatcher(tools: ToolRegistry, limits: JsonRpcLimits | None = None) -> Dispatcher:
    return Dispatcher(McpMethods(tools, SERVER_INFO).handler_table(), limits)


@pytest.fixture
def dispatcher() -> Dispatcher:
    return _dispatcher(_tools())


@pytest.fixture
def ctx() -> CallContext:
    services = Services(settings=Settings(), tools=_tools(), embedder=Embedder())
    return CallContext(agent_id="agent-a", session_id="s1", instance_id="i1", services=services)


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id, "method": method}
    if params is not None:
        message["params"] = params
    return message


async def test_string_and_integer_ids_are_echoed(dispatcher: Dispatcher, ctx: CallContext) -> None:
    for request_id in ("abc-1", 42, 0, -5, ""):
        reply = await dispatcher.handle_message(req("ping", id=request_id), ctx)
        assert reply == {"jsonrpc": "2.0", "id": request_id, "result": {}}


async def test_null_id_is_a_request_not_a_notification(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    reply = await dispatcher.handle_message(req("ping", id=None), ctx)
    assert reply == {"jsonrpc": "2.0", "id": None, "result": {}}


async def test_notifications_get_no_reply_even_when_they_fail(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    for method, params in [
        ("ping", None),
        ("add", {"a": 1, "b": 2}),
        ("add", {"a": "x"}),
        ("boom", {"kind": "bug"}),
        ("no/such/method", None),
        ("notifications/initialized", None),
    ]:
        message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        assert await dispatcher.handle_message(message, ctx) is None
    assert ctx.extra["mcp_initialized"] is True


async def test_parse_error_has_null_id(dispatcher: Dispatcher, ctx: CallContext) -> None:
    for raw in ('{"jsonrpc": "2.0", "method": "ping", "id": 1', b"\xff\xfe", "", "nul"):
        reply = json.loads(await dispatcher.handle_text(raw, ctx) or "null")
        assert reply["id"] is None
        assert reply["error"]["code"] == -32700
        assert reply["error"]["data"]["reason"] == "parse_error"


@pytest.mark.parametrize(
    ("message", "expected_id"),
    [
        ({"jsonrpc": "1.0", "id": 3, "method": "ping"}, 3),
        ({"id": 4, "method": "ping"}, 4),
        ({"jsonrpc": "2.0", "id": "x", "method": 12}, "x"),
        ({"jsonrpc": "2.0", "id": "y"}, "y"),
        ({"jsonrpc": "2.0", "id": True, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 1.5, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}, None),
        ({"jsonrpc": "2.0", "id": 5, "method": "ping", "params": "str"}, 5),
        ({"jsonrpc": "2.0", "method": 1, "params": "bar"}, None),
        (42, None),
        ("ping", None),
        (None, None),
    ],
)
async def test_invalid_requests(
    dispatcher: Dispatcher, ctx: CallContext, message: Any, expected_id: Any
) -> None:
    reply = await dispatcher.handle_message(message, ctx)
    assert isinstance(reply, dict)
    assert reply["id"] == expected_id
    assert reply["error"]["code"] == -32600


async def test_unknown_method_names_it(dispatcher: Dispatcher, ctx: CallContext) -> None:
    reply = await dispatcher.handle_message(req("recall_memries", {}, id="q"), ctx)
    assert isinstance(reply, dict)
    assert reply["id"] == "q"
    assert reply["error"]["code"] == -32601
    assert "recall_memries" in reply["error"]["message"]


async def test_invalid_params_name_the_field(dispatcher: Dispatcher, ctx: CallContext) -> None:
    cases = [
        ({"a": 1}, "b"),
        ({"a": 1, "b": "two"}, "b"),
        ({"a": 1, "b": 2, "c": 3}, "c"),
        ([1, 2], "params"),
    ]
    for params, field in cases:
        reply = await dispatcher.handle_message(req("add", params), ctx)
        assert isinstance(reply, dict)
        error = reply["error"]
        assert error["code"] == -32602, error
        assert error["data"]["field"] == field
        assert field in error["message"]


async def test_direct_tool_call_returns_the_tools_dict(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    reply = await dispatcher.handle_message(req("add", {"a": 2, "b": 3}), ctx)
    assert reply == {"jsonrpc": "2.0", "id": 1, "result": {"sum": 5, "agent": "agent-a"}}


async def test_server_codes_from_tmws_errors(dispatcher: Dispatcher, ctx: CallContext) -> None:
    reply = await dispatcher.handle_message(req("boom", {"kind": "not_found"}), ctx)
    assert isinstance(reply, dict)
    assert reply["error"] == {
        "code": -32005,
        "message": "task 7 does not exist",
        "data": {"reason": "not_found", "task_id": 7},
    }
    reply = await dispatcher.handle_message(req("boom", {"kind": "timeout"}), ctx)
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32001


async def test_internal_error_is_logged_not_sent(
    dispatcher: Dispatcher, ctx: CallContext, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="service.jsonrpc"):
        reply = await dispatcher.handle_message(req("boom", {"kind": "bug"}, id=9), ctx)
    assert isinstance(reply, dict)
    error = reply["error"]
    assert reply["id"] == 9
    assert error["code"] == -32603
    assert "internal detail" not in json.dumps(reply)
    assert "Traceback" not in json.dumps(reply)
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "internal detail" in str(logged[0].exc_info[1])  # type: ignore[index]
    assert error["data"]["error_id"] in logged[0].getMessage()


async def test_batches(dispatcher: Dispatcher, ctx: CallContext) -> None:
    batch = [
        req("add", {"a": 1, "b": 1}, id="one"),
        {"jsonrpc": "2.0", "method": "ping"},  # notification: no entry in the reply
        req("nope", id=2),
        {"foo": "boo"},
        req("ping", id=3),
    ]
    reply = await dispatcher.handle_message(batch, ctx)
    assert isinstance(reply, list)
    by_id = {r["id"]: r for r in reply}
    assert len(reply) == 4
    assert by_id["one"]["result"]["sum"] == 2
    assert by_id[2]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600
    assert by_id[3]["result"] == {}


async def test_empty_batch_is_one_invalid_request(dispatcher: Dispatcher, ctx: CallContext) -> None:
    reply = await dispatcher.handle_message([], ctx)
    assert isinstance(reply, dict)
    assert reply["id"] is None
    assert reply["error"]["code"] == -32600


async def test_all_notification_batch_gets_nothing(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    batch = [{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "add"}]
    assert await dispatcher.handle_text(json.dumps(batch), ctx) is None


async def test_batch_of_invalid_items_answers_each(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    reply = await dispatcher.handle_message([1, 2, 3], ctx)
    assert isinstance(reply, list)
    assert [r["error"]["code"] for r in reply] == [-32600, -32600, -32600]


async def test_initialize_negotiates_version(dispatcher: Dispatcher, ctx: CallContext) -> None:
    params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t"}}
    reply = await dispatcher.handle_message(req("initialize", params), ctx)
    assert isinstance(reply, dict)
    result = reply["result"]
    assert result["protocolVersion"] == "2025-06-18"
    assert result["capabilities"] == {"tools": {"listChanged": False}}
    assert result["serverInfo"] == SERVER_INFO
    params["protocolVersion"] = "1999-01-01"
    reply = await dispatcher.handle_message(req("initialize", params), ctx)
    assert isinstance(reply, dict)
    assert reply["result"]["protocolVersion"] == LATEST_PROTOCOL_VERSION
    reply = await dispatcher.handle_message(req("initialize", {"protocolVersion": 7}), ctx)
    assert isinstance(reply, dict)
    assert reply["error"]["data"]["field"] == "protocolVersion"


async def test_tools_list_has_schemas(dispatcher: Dispatcher, ctx: CallContext) -> None:
    reply = await dispatcher.handle_message(req("tools/list"), ctx)
    assert isinstance(reply, dict)
    tools = {t["name"]: t for t in reply["result"]["tools"]}
    assert set(tools) == {"add", "boom"}
    schema = tools["add"]["inputSchema"]
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"a", "b"}


async def test_tools_call_success_and_tool_failure(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    call = {"name": "add", "arguments": {"a": 4, "b": 5}}
    reply = await dispatcher.handle_message(req("tools/call", call), ctx)
    assert isinstance(reply, dict)
    result = reply["result"]
    assert result["isError"] is False
    assert result["structuredContent"] == {"sum": 9, "agent": "agent-a"}
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]

    call = {"name": "boom", "arguments": {"kind": "not_found"}}
    reply = await dispatcher.handle_message(req("tools/call", call), ctx)
    assert isinstance(reply, dict)
    result = reply["result"]
    assert result["isError"] is True
    assert result["structuredContent"]["error"]["code"] == -32005
    assert json.loads(result["content"][0]["text"]) == result["structuredContent"]


async def test_tools_call_protocol_errors(dispatcher: Dispatcher, ctx: CallContext) -> None:
    cases = [
        ({"name": "nope", "arguments": {}}, -32602, "name"),
        ({"arguments": {}}, -32602, "name"),
        ({"name": "add", "arguments": [1]}, -32602, "arguments"),
    ]
    for params, code, field in cases:
        reply = await dispatcher.handle_message(req("tools/call", params), ctx)
        assert isinstance(reply, dict)
        assert reply["error"]["code"] == code, params
        assert reply["error"]["data"]["field"] == field
    reply = await dispatcher.handle_message(
        req("tools/call", {"name": "boom", "arguments": {"kind": "bug"}}), ctx
    )
    assert isinstance(reply, dict)
    assert reply["error"]["code"] == -32603


async def test_tools_call_bad_arguments_are_a_tool_error_sep_1303(
    dispatcher: Dispatcher, ctx: CallContext
) -> None:
    # MCP 2025-11-25: a model reads isError results and can correct its arguments.
    for arguments, field in (({"a": 1}, "b"), ({"a": 1, "b": "two"}, "b"), ({"a": "\x00"}, "a")):
        reply = await dispatcher.handle_message(
            req("tools/call", {"name": "add", "arguments": arguments}), ctx
        )
        assert isinstance(reply, dict) and "error" not in reply, arguments
        result = reply["result"]
        assert result["isError"] is True
        error = result["structuredContent"]["error"]
        assert (error["code"], error["data"]["field"]) == (-32602, field)
    # The same arguments as a direct JSON-RPC method stay a protocol error.
    reply = await dispatcher.handle_message(req("add", {"a": 1}), ctx)
    assert isinstance(reply, dict)
    assert (reply["error"]["code"], reply["error"]["data"]["field"]) == (-32602, "b")


async def test_reject_answers_every_request_in_a_batch(dispatcher: Dispatcher) -> None:
    from service.errors import RateLimited

    batch = [req("ping", id="a"), {"jsonrpc": "2.0", "method": "ping"}, req("ping", id=7)]
    reply = dispatcher.reject(batch, RateLimited("slow down"))
    assert isinstance(reply, list)
    assert [(r["id"], r["error"]["data"]["reason"]) for r in reply] == [
        ("a", "rate_limited"),
        (7, "rate_limited"),
    ]
    assert dispatcher.reject({"jsonrpc": "2.0", "method": "ping"}, RateLimited("x")) is None


async def test_batch_length_is_bounded(ctx: CallContext) -> None:
    dispatcher = _dispatcher(_tools(), JsonRpcLimits(max_batch=3))
    reply = json.loads(
        await dispatcher.handle_text(json.dumps([req("ping", id=i) for i in range(4)]), ctx) or ""
    )
    assert (reply["id"], reply["error"]["code"], reply["error"]["data"]["reason"]) == (
        None,
        -32600,
        "batch_too_long",
    )
    reply = json.loads(
        await dispatcher.handle_text(json.dumps([req("ping", id=i) for i in range(3)]), ctx) or ""
    )
    assert [r["id"] for r in reply] == [0, 1, 2]


async def test_reply_size_is_bounded_per_reply_and_per_batch(ctx: CallContext) -> None:
    tools = ToolRegistry()

    class PageArgs(ToolArgs):
        limit: int = 10

    @tools.tool("page", "rows", PageArgs)
    async def page(ctx: CallContext, args: PageArgs) -> dict[str, Any]:
        rows = ["r" * 1000] * args.limit
        return {"rows": rows, "count": len(rows)}

    dispatcher = _dispatcher(tools, JsonRpcLimits(max_reply_bytes=8192))
    text = await dispatcher.handle_text(json.dumps(req("page", {"limit": 20})), ctx)
    error = json.loads(text or "")["error"]
    assert (error["code"], error["data"]["reason"]) == (-32003, "reply_too_large")
    suggested = error["data"]["suggested_limit"]
    assert 1 <= suggested < 8
    ok = json.loads(
        await dispatcher.handle_text(json.dumps(req("page", {"limit": suggested})), ctx) or ""
    )
    assert ok["result"]["count"] == suggested
    batch = [req("page", {"limit": 3}, id=i) for i in range(4)]  # ~3 KB each, 8 KB in all
    replies = json.loads(await dispatcher.handle_text(json.dumps(batch), ctx) or "")
    assert ["result" in r for r in replies] == [True, True, False, False]
    assert replies[2]["error"]["data"]["batch_remaining"] < 8192


async def test_the_dispatcher_knows_only_its_table(ctx: CallContext) -> None:
    """No MCP inside: a table without `ping` has no ping; its own methods and paging work."""

    async def echo(params: Any, ctx: CallContext) -> Any:
        return params

    table = HandlerTable(
        requests={"echo": echo},
        paging=lambda request, result: Paging("echo", len(result["rows"]), offset=False),
    )
    dispatcher = Dispatcher(table, JsonRpcLimits(max_reply_bytes=600))
    assert (await dispatcher.handle_one(req("echo", {"a": 1}), ctx)) == {
        "jsonrpc": "2.0",
        "id": 1,
        "result": {"a": 1},
    }
    missing = await dispatcher.handle_one(req("ping"), ctx)
    assert missing is not None and missing["error"]["code"] == -32601
    big = {"rows": ["x" * 50] * 20}
    text = await dispatcher.handle_text(json.dumps(req("echo", big)), ctx)
    error = json.loads(text or "")["error"]["data"]
    assert (error["tool"], error["hint"]) == (
        "echo",
        f"call echo with limit={error['suggested_limit']}",
    )
