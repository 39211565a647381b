"""The hostile-input corpus of issue 10: each input with the exact answer it must get.

Frames are raw text as a client would send them, so JSON escapes (`\\u0000`, `\\ud800`) and
non-JSON tokens (`NaN`) reach the server exactly as written. `code` None means success; `field`
is the `data.field` the error must name; `tool_error` means the answer is a `tools/call` result
with `isError: true` carrying that code (MCP 2025-11-25, SEP-1303).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: A reply whose id must be null (the request's id could not be read or used).
NULL_ID = None
#: The id the corpus requests carry unless a case says otherwise.
RID = "h-1"
NOT_A_UUID_TASK = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Case:
    name: str
    #: Which bullet of the issue's "Why" it covers.
    why: str
    frame: str
    code: int | None
    field: str | None = None
    reply_id: Any = RID
    reason: str | None = None
    tool_error: bool = False


def call(method: str, params: Any, rid: Any = RID) -> str:
    return json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})


def tool_call(name: str, arguments: dict[str, Any], rid: Any = RID) -> str:
    return call("tools/call", {"name": name, "arguments": arguments}, rid)


NUL = "a\x00b"
DEEP_ARRAYS = "[" * 2000 + "]" * 2000  # ~4 KB: used to raise RecursionError and drop the socket
DEEP_PARAMS = (
    '{"jsonrpc":"2.0","id":"h-1","method":"store_memory","params":{"content":"x","metadata":'
    + '{"a":' * 2000
    + "1"
    + "}" * 2000
    + "}}"
)

WS_CASES: tuple[Case, ...] = (
    # ---- NUL characters: PostgreSQL refuses them; -32602 naming the field, before the database
    Case("nul_content", "nul", call("store_memory", {"content": NUL}), -32602, "content"),
    Case("nul_tag", "nul", call("store_memory", {"content": "x", "tags": [NUL]}), -32602, "tags.0"),
    Case(
        "nul_metadata_value",
        "nul",
        call("store_memory", {"content": "x", "metadata": {"note": NUL}}),
        -32602,
        "metadata.note",
    ),
    Case(
        "nul_metadata_key",
        "nul",
        call("store_memory", {"content": "x", "metadata": {NUL: 1}}),
        -32602,
        "metadata",
    ),
    Case("nul_task_title", "nul", call("create_task", {"title": NUL}), -32602, "title"),
    Case(
        "nul_recall_tags",
        "nul",
        call("recall_memory", {"query": "x", "tags": [NUL]}),
        -32602,
        "tags.0",
    ),
    Case(
        "nul_pattern_query_routed_to_a_store",
        "nul",
        call("execute_pattern", {"query": f"remember that the deploy key is {NUL}"}),
        -32602,
        "query",
    ),
    Case(
        "nul_in_workflow_step",
        "nul",
        call(
            "execute_workflow",
            {"steps": [{"tool": "store_memory", "arguments": {"content": NUL}}]},
        ),
        -32602,
        "steps.0.arguments.content",
    ),
    Case(
        "nul_tools_call_is_a_tool_error",
        "sep1303",
        tool_call("store_memory", {"content": NUL}),
        -32602,
        "content",
        tool_error=True,
    ),
    Case("nul_in_id_is_just_a_string", "nul", call("ping", {}, rid=NUL), None, reply_id=NUL),
    # ---- numbers JSON does not have: -32700 for the frame (id unreadable: null)
    Case(
        "nan_importance",
        "nan",
        '{"jsonrpc":"2.0","id":"h-1","method":"store_memory","params":{"content":"x","importance":NaN}}',
        -32700,
        reply_id=NULL_ID,
    ),
    Case(
        "infinity_in_metadata",
        "nan",
        '{"jsonrpc":"2.0","id":"h-1","method":"store_memory","params":{"content":"x","metadata":{"v":Infinity}}}',
        -32700,
        reply_id=NULL_ID,
    ),
    Case(
        "minus_infinity",
        "nan",
        '{"jsonrpc":"2.0","id":"h-1","method":"recall_memory","params":{"query":"x","min_similarity":-Infinity}}',
        -32700,
        reply_id=NULL_ID,
    ),
    Case(
        "1e400_overflows",
        "nan",
        '{"jsonrpc":"2.0","id":"h-1","method":"store_memory","params":{"content":"x","importance":1e400}}',
        -32700,
        reply_id=NULL_ID,
    ),
    Case(
        "huge_integer",
        "nan",
        '{"jsonrpc":"2.0","id":"h-1","method":"list_tasks","params":{"limit":' + "9" * 5000 + "}}",
        -32700,
        reply_id=NULL_ID,
    ),
    Case(
        "integer_past_int32",
        "nan",
        call("update_task", {"task_id": NOT_A_UUID_TASK, "title": "t", "expected_version": 10**30}),
        -32602,
        "expected_version",
    ),
    Case("limit_past_range", "nan", call("list_tasks", {"limit": 10**20}), -32602, "limit"),
    # ---- deep nesting: -32700, socket kept
    Case("deep_arrays", "deep", DEEP_ARRAYS, -32700, reply_id=NULL_ID, reason="nesting_too_deep"),
    Case("deep_params", "deep", DEEP_PARAMS, -32700, reply_id=NULL_ID, reason="nesting_too_deep"),
    # ---- lone surrogates: an answer for that id (null when the id itself is the problem)
    Case(
        "surrogate_id",
        "surrogate",
        '{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}',
        -32600,
        reply_id=NULL_ID,
    ),
    Case(
        "surrogate_method",
        "surrogate",
        '{"jsonrpc":"2.0","id":"h-1","method":"\\ud800"}',
        -32600,
    ),
    Case(
        "surrogate_content",
        "surrogate",
        '{"jsonrpc":"2.0","id":"h-1","method":"store_memory","params":{"content":"\\udfff"}}',
        -32602,
        "content",
    ),
    Case(
        "surrogate_unknown_tool",
        "surrogate",
        '{"jsonrpc":"2.0","id":"h-1","method":"tools/call","params":{"name":"\\ud800x"}}',
        -32602,
        "name",
    ),
    Case("invalid_utf8_binary", "surrogate", "", -32700, reply_id=NULL_ID),  # sent as bytes
    # ---- batches
    Case(
        "batch_of_3000_pings",
        "batch",
        json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(3000)]),
        -32600,
        reply_id=NULL_ID,
        reason="batch_too_long",
    ),
    Case(
        "batch_of_300_recalls",
        "batch",
        json.dumps(
            [
                {
                    "jsonrpc": "2.0",
                    "id": i,
                    "method": "recall_memory",
                    "params": {"query": "q", "limit": 100},
                }
                for i in range(300)
            ]
        ),
        -32600,
        reply_id=NULL_ID,
        reason="batch_too_long",
    ),
    Case("empty_batch", "batch", "[]", -32600, reply_id=NULL_ID),
    # ---- size limits
    Case(
        "metadata_too_large",
        "sizes",
        call("store_memory", {"content": "x", "metadata": {"blob": "m" * (17 << 10)}}),
        -32602,
        "metadata",
    ),
    Case(
        "task_result_too_large",
        "sizes",
        call("update_task", {"task_id": NOT_A_UUID_TASK, "result": {"blob": "r" * (65 << 10)}}),
        -32602,
        "result",
    ),
    Case(
        "task_description_too_long",
        "sizes",
        call("create_task", {"title": "t", "description": "d" * 5001}),
        -32602,
        "description",
    ),
    Case(
        "team_namespace_with_nul",
        "nul",
        call("execute_pattern", {"query": "recall my notes", "namespace": "team:a\x00"}),
        -32602,
        "namespace",
    ),
)

#: Bytes sent as a binary frame for the case of that name (invalid UTF-8).
BINARY_FRAMES = {"invalid_utf8_binary": b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"ping"}'}


@dataclass(frozen=True)
class HttpCase:
    name: str
    why: str
    body: str
    status: int
    code: int | None
    field: str | None = None
    tool_error: bool = False


MCP_CASES: tuple[HttpCase, ...] = (
    HttpCase(
        "nul_content",
        "nul",
        tool_call("store_memory", {"content": NUL}),
        200,
        -32602,
        "content",
        True,
    ),
    HttpCase(
        "nul_title", "nul", tool_call("create_task", {"title": NUL}), 200, -32602, "title", True
    ),
    HttpCase(
        "nul_pattern_query",
        "nul",
        tool_call("execute_pattern", {"query": f"remember that {NUL}"}),
        200,
        -32602,
        "query",
        True,
    ),
    HttpCase(
        "nan",
        "nan",
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"store_memory","arguments":{"content":"x","importance":NaN}}}',
        400,
        -32700,
    ),
    HttpCase(
        "infinity",
        "nan",
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"store_memory","arguments":{"content":"x","metadata":{"v":Infinity}}}}',
        400,
        -32700,
    ),
    HttpCase(
        "1e400",
        "nan",
        '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"store_memory","arguments":{"content":"x","importance":1e400}}}',
        400,
        -32700,
    ),
    HttpCase("deep_arrays", "deep", DEEP_ARRAYS, 400, -32700),
    HttpCase(
        "surrogate_id", "surrogate", '{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}', 400, -32700
    ),
    HttpCase(
        "batch",
        "batch",
        json.dumps([{"jsonrpc": "2.0", "id": i, "method": "ping"} for i in range(3000)]),
        400,
        -32600,
    ),
    HttpCase(
        "metadata_too_large",
        "sizes",
        tool_call("store_memory", {"content": "x", "metadata": {"blob": "m" * (17 << 10)}}),
        200,
        -32602,
        "metadata",
        True,
    ),
    HttpCase(
        "bad_argument_type",
        "sep1303",
        tool_call("recall_memory", {"query": "x", "limit": "many"}),
        200,
        -32602,
        "limit",
        True,
    ),
    HttpCase("unknown_tool", "sep1303", tool_call("no_such_tool", {}), 200, -32602, "name"),
    HttpCase("body_too_large", "sizes", tool_call("echo", {"text": "b" * (1 << 20)}), 413, -32003),
)
