"""Who may be whom and do what: agent ids, admin rights, the secret, and what answers reveal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import jwt
import pytest
from websockets.exceptions import ConnectionClosed

from service.auth import issue_token
from service.client import RpcError, WsClient
from service.config import SecuritySettings, Settings
from service.context import CallContext
from service.errors import InvalidParams
from service.tools.pattern_tools import NoArgs, system_status
from tests.service.hostile.conftest import Server, StartLight, post_mcp

SECRET = "hostile-identity-secret-longer-than-32-bytes"
ROOT = Path(__file__).resolve().parents[3]
ServeAs = Callable[[Settings], Awaitable[Server]]


def tool_call(name: str, arguments: dict[str, object]) -> str:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": name, "arguments": arguments},
        }
    )


async def test_team_prefixed_agent_ids_are_refused(start_light: StartLight) -> None:
    """Before: agent `team:alpha` owned the team namespace as its private one."""
    server = await start_light()
    with pytest.raises(ConnectionClosed) as info:
        await WsClient.connect(server.ws, "team:alpha")
    assert info.value.rcvd is not None and info.value.rcvd.code == 1008
    assert "agent_id 'team:alpha' is invalid" in info.value.rcvd.reason
    status, body = await post_mcp(
        server, tool_call("echo", {"text": "x"}), {"X-TMWS-Agent-Id": "team:alpha"}
    )
    assert status == 400 and (body["error"]["code"], body["error"]["data"]["field"]) == (
        -32602,
        "agent_id",
    )
    with pytest.raises(InvalidParams):
        issue_token(SECRET, "team:alpha")

    authed = await start_light(auth_secret=SECRET)
    now = int(time.time())
    forged = jwt.encode(
        {"sub": "team:alpha", "iat": now, "exp": now + 60}, SECRET, algorithm="HS256"
    )
    status, body = await post_mcp(
        authed, tool_call("echo", {"text": "x"}), {"Authorization": f"Bearer {forged}"}
    )
    assert status == 400 and body["error"]["data"]["field"] == "agent_id"


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TMWS_")}
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def test_short_secret_and_team_ids_are_one_line_errors() -> None:
    done = run_cli("serve", "--port", "0", TMWS_AUTH_SECRET="abc")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "tmws: error: TMWS_AUTH_SECRET is 3 bytes; use at least 32 "
        "(e.g. the output of `openssl rand -hex 32`)"
    ]
    done = run_cli("token", "team:alpha", TMWS_AUTH_SECRET=SECRET)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "agent_id 'team:alpha' is invalid" in done.stderr


async def test_admin_list_on_an_open_server(stack: Server, serve_stack_as: ServeAs) -> None:
    settings = replace(stack.settings, security=SecuritySettings(admin_agents=("ops-admin",)))
    server = await serve_stack_as(settings)
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{server.http}/health")).json()
    assert health["admin"] == "TMWS_ADMIN_AGENTS (1 agents; identities unverified: open server)"
    async with await WsClient.connect(server.ws, "bob-plain") as bob:
        for method, params in (
            ("invalidate_cache", {"namespace": "*"}),
            ("invalidate_cache", {"namespace": "carol"}),
            ("reload_patterns", {}),
        ):
            with pytest.raises(RpcError) as info:
                await bob.call(method, params)
            assert (info.value.code, info.value.reason) == (-32006, "admin_required"), method
        as_tool = await bob.call_tool("reload_patterns", {})
        assert as_tool["isError"] is True
        assert as_tool["structuredContent"]["error"]["data"]["reason"] == "admin_required"
        own = await bob.call("invalidate_cache", {})
        assert own["namespace"] == "bob-plain" and isinstance(own["generation"], int)
        team = await bob.call("invalidate_cache", {"namespace": "team:hostile"})
        assert team["namespace"] == "team:hostile"
    async with await WsClient.connect(server.ws, "ops-admin") as ops:
        assert (await ops.call("invalidate_cache", {"namespace": "*"}))["namespace"] == "*"
        assert (await ops.call("invalidate_cache", {"namespace": "carol"}))["namespace"] == "carol"
        assert (await ops.call("reload_patterns", {}))["patterns"] > 0


async def test_admin_claim_with_auth(stack: Server, serve_stack_as: ServeAs) -> None:
    server = await serve_stack_as(replace(stack.settings, auth_secret=SECRET))
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{server.http}/health")).json()
    assert health["admin"] == "tokens with the admin claim"
    plain = issue_token(SECRET, "plain-agent")
    admin = issue_token(SECRET, "boss-agent", admin=True)
    async with await WsClient.connect(server.ws, "plain-agent", plain) as client:
        with pytest.raises(RpcError) as info:
            await client.call("invalidate_cache", {"namespace": "*"})
        assert info.value.reason == "admin_required"
    async with await WsClient.connect(server.ws, "boss-agent", admin) as client:
        assert (await client.call("invalidate_cache", {"namespace": "*"}))["namespace"] == "*"
    reload = tool_call("reload_patterns", {})
    status, body = await post_mcp(server, reload, {"Authorization": f"Bearer {plain}"})
    assert status == 200 and body["result"]["isError"] is True
    status, body = await post_mcp(server, reload, {"Authorization": f"Bearer {admin}"})
    assert status == 200 and body["result"]["isError"] is False


async def test_open_server_without_a_list_says_everyone_is_admin(stack: Server) -> None:
    async with httpx.AsyncClient() as http:
        health = (await http.get(f"{stack.http}/health")).json()
    assert health["admin"] == "everyone (open server and TMWS_ADMIN_AGENTS unset)"
    async with await WsClient.connect(stack.ws, "anyone") as client:
        assert (await client.call("invalidate_cache", {"namespace": "*"}))["namespace"] == "*"


async def test_system_status_reports_the_real_redis_state(stack: Server) -> None:
    """Before: `redis: "absent"` while Redis was up (it looked for a field that was removed)."""
    async with await WsClient.connect(stack.ws, "status-agent") as client:
        status = await client.call("system_status", {})
    assert (status["redis"], status["cache"]) == ("ok", "enabled")
    assert status["redis_state"]  # the listener's own word for it (e.g. "up")
    assert stack.services is not None
    no_cache = replace(stack.services, cache=None)
    ctx = CallContext("status-agent", "s", "i", no_cache)
    assert (await system_status(ctx, NoArgs()))["redis"] == "absent"


async def test_global_pattern_answers_carry_nothing_of_the_first_caller(stack: Server) -> None:
    """Before: the globally cached execute_tool answer named the first caller to everyone."""
    query = {"query": "execute tool test", "use_cache": True}
    async with await WsClient.connect(stack.ws, "first-caller-7f3a") as first:
        one = await first.call("execute_pattern", query)
        direct = await first.call("execute_tool", {"probe": "p"})
    async with await WsClient.connect(stack.ws, "second-caller-9c1b") as second:
        two = await second.call("execute_pattern", query)
    assert two["cache_hit"] is True and two["result"] == one["result"]
    assert "first-caller-7f3a" not in json.dumps(two)
    assert "agent" not in direct and "first-caller-7f3a" not in json.dumps(direct)


async def test_no_global_scope_pattern_answer_names_its_caller(stack: Server) -> None:
    """Every pattern cached for everyone (cache_scope: global) answers without caller data."""
    assert stack.services is not None
    engine = stack.services.patterns
    global_patterns = [p for p in engine.registry if p.cache_scope == "global"]
    assert len(global_patterns) >= 3, [p.name for p in global_patterns]
    agent = "caller-id-5e8d1f"
    async with await WsClient.connect(stack.ws, agent) as client:
        for pattern in global_patterns:
            query = pattern.exemplars[0]
            answer = await client.call("execute_pattern", {"query": query, "use_cache": False})
            assert answer["pattern_name"] == pattern.name, (query, answer["pattern_name"])
            assert agent not in json.dumps(answer["result"]), (pattern.name, answer["result"])
