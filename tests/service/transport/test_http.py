"""/health, the Streamable HTTP MCP endpoint with the official SDK client, and authentication."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError
from websockets.exceptions import ConnectionClosed

from service.auth import issue_token
from service.client import WsClient

StartServer = Callable[..., Awaitable[Any]]
SECRET = "transport-test-secret-long-enough-for-hs256"


def sdk_client(url: str, headers: dict[str, str]) -> tuple[Any, Client]:
    """An SDK client whose HTTP requests carry `headers` (the caller enters the http client)."""
    http = create_mcp_http_client(headers=headers)
    return http, Client(streamable_http_client(url, http_client=http))


def _find_mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError inside whatever (possibly nested) exception group the SDK raised."""
    if isinstance(exc, MCPError):
        return exc
    for inner in getattr(exc, "exceptions", ()):
        found = _find_mcp_error(inner)
        if found is not None:
            return found
    return None


async def test_health_open_server(start_server: StartServer) -> None:
    server = await start_server()
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{server.http}/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["instance_id"] == "tmws-test"
    assert body["auth"] == "disabled (open)"
    assert body["server_version"] == "2.2.0"


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_official_sdk_client_lists_and_calls_tools(
    start_server: StartServer, mode: str
) -> None:
    server = await start_server()
    url = f"{server.http}/mcp"
    async with Client(url, mode=mode) as client:
        listed = await client.list_tools()
        tools = {t.name: t for t in listed.tools}
        assert set(tools) == {"echo", "fail", "gate"}
        assert tools["echo"].input_schema["required"] == ["text"]

        result = await client.call_tool("echo", {"text": "hi", "n": 3})
        assert result.is_error is False
        assert result.structured_content == {
            "text": "hihihi",
            "agent_id": "mcp-http",
            "session_id": result.structured_content["session_id"],
        }

        failed = await client.call_tool("fail", {"kind": "not_found"})
        assert failed.is_error is True
        assert failed.structured_content["error"]["code"] == -32005

        # SEP-1303: bad arguments are a tool error the model can read, not a protocol error.
        typo = await client.call_tool("echo", {"txt": "typo"})
        assert typo.is_error is True
        error = typo.structured_content["error"]
        assert (error["code"], error["data"]["field"]) == (-32602, "text")
        with pytest.raises(MCPError) as info:
            await client.call_tool("no_such_tool", {})
        assert info.value.code == -32602  # an unknown tool stays a protocol error


async def test_sdk_agent_header_sets_the_namespace(start_server: StartServer) -> None:
    server = await start_server()
    http, client = sdk_client(f"{server.http}/mcp", {"X-TMWS-Agent-Id": "agent-h"})
    async with http, client:
        result = await client.call_tool("echo", {"text": "x"})
    assert result.structured_content["agent_id"] == "agent-h"


async def test_auth_on_websocket(start_server: StartServer) -> None:
    server = await start_server(auth_secret=SECRET)
    refusals = {
        None: "unauthorized: missing token",
        "garbage": "unauthorized: malformed token",
        issue_token("some-other-secret-of-good-length-xx", "agent-a"): "bad token signature",
        issue_token(SECRET, "agent-b"): "token subject 'agent-b' does not match agent_id 'agent-a'",
        issue_token(SECRET, "agent-a", ttl_s=-3600): "unauthorized: token expired",
    }
    for token, reason in refusals.items():
        with pytest.raises(ConnectionClosed) as info:
            await WsClient.connect(server.ws, "agent-a", token=token)
        assert info.value.rcvd is not None
        assert info.value.rcvd.code == 1008
        assert reason in info.value.rcvd.reason
    assert server.services.sessions.count() == 0  # refused before any session (or tool) existed

    good = issue_token(SECRET, "agent-a")
    async with await WsClient.connect(server.ws, "agent-a", token=good) as client:
        assert (await client.call("echo", {"text": "in"}))["agent_id"] == "agent-a"
    async with await WsClient.connect(
        server.ws, "agent-a", token=good, token_in_header=True
    ) as client:
        assert await client.call("ping") == {}


async def test_auth_on_mcp_http(start_server: StartServer) -> None:
    server = await start_server(auth_secret=SECRET)
    url = f"{server.http}/mcp"
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{server.http}/health")).json()
        assert health["auth"] == "enabled"
        for headers in (
            {},
            {"Authorization": "Bearer nonsense"},
            {"Authorization": f"Bearer {issue_token('wrong-secret-but-long-enough-ok!!', 'a')}"},
            {"X-TMWS-Agent-Id": "agent-a"},  # the header alone is not identity when auth is on
        ):
            response = await http.post(url, json=body, headers=headers)
            assert response.status_code == 401, headers
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"]["code"] == -32004

    http_client, client = sdk_client(url, {"Authorization": "Bearer nonsense"})
    async with http_client:
        with pytest.raises(BaseException) as info:
            async with client:
                pass
    refusal = _find_mcp_error(info.value)
    assert refusal is not None, info.value
    assert refusal.code == -32004 and "malformed token" in refusal.message

    token = issue_token(SECRET, "agent-z")
    http_client, client = sdk_client(url, {"Authorization": f"Bearer {token}"})
    async with http_client, client:
        result = await client.call_tool("echo", {"text": "authorised"})
    assert result.structured_content["agent_id"] == "agent-z"


async def test_ws_and_mcp_share_one_server(start_server: StartServer) -> None:
    server = await start_server()
    async with await WsClient.connect(server.ws, "agent-a") as ws_client:
        async with Client(f"{server.http}/mcp") as mcp_client:
            ws_result, mcp_result = await asyncio.gather(
                ws_client.call_tool("echo", {"text": "same"}),
                mcp_client.call_tool("echo", {"text": "same"}),
            )
    assert ws_result["structuredContent"]["text"] == mcp_result.structured_content["text"]
