"""DNS rebinding: a foreign Origin or Host is refused with 403 on both endpoints.

A WebSocket from a foreign origin is refused during the handshake, before any welcome.
"""

from __future__ import annotations

import json

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from service.client import WsClient, ws_url
from service.config import SecuritySettings
from tests.service.hostile.conftest import StartLight, post_mcp

EVIL = "http://evil.example.com"
PING = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"})


async def refused_handshake(url: str, **kwargs: object) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as info:
        async with connect(url, open_timeout=10, **kwargs):  # type: ignore[arg-type]
            pass
    return info.value


async def test_websocket_with_a_foreign_origin_gets_403_before_the_welcome(
    start_light: StartLight,
) -> None:
    server = await start_light()
    refused = await refused_handshake(ws_url(server.ws, "victim"), origin=EVIL)
    assert refused.response.status_code == 403
    body = json.loads(refused.response.body)
    assert (body["error"]["code"], body["error"]["data"]["reason"]) == (
        -32006,
        "origin_not_allowed",
    )
    assert server.services is not None and server.services.sessions.count() == 0

    # A rebound name: the socket goes to 127.0.0.1, the Host header says evil.example.com.
    refused = await refused_handshake(
        ws_url(f"ws://evil.example.com:{server.port}/ws/mcp", "victim"),
        host="127.0.0.1",
        port=server.port,
    )
    assert refused.response.status_code == 403

    # Loopback pages and non-browser clients (no Origin) are served.
    async with connect(
        ws_url(server.ws, "local"), origin=f"http://127.0.0.1:{server.port}", open_timeout=10
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["method"] == "welcome"
    async with await WsClient.connect(server.ws, "no-origin") as client:
        assert await client.call("ping") == {}


async def test_mcp_with_a_foreign_origin_or_host_gets_403(start_light: StartLight) -> None:
    server = await start_light()
    for headers in ({"Origin": EVIL}, {"Host": "evil.example.com"}, {"Origin": "null"}):
        status, body = await post_mcp(server, PING, headers)
        assert status == 403, headers
        assert body["error"]["code"] == -32006
    for headers in (
        {},
        {"Origin": f"http://localhost:{server.port}"},
        {"Origin": f"http://[::1]:{server.port}", "Host": f"[::1]:{server.port}"},
    ):
        status, body = await post_mcp(server, PING, headers)
        assert (status, body["result"]) == (200, {}), headers


async def test_allowed_origins_setting_replaces_the_loopback_default(
    start_light: StartLight,
) -> None:
    security = SecuritySettings(allowed_origins=("https://app.example", "http://localhost:*"))
    server = await start_light(security=security)
    allowed = ("https://app.example", "http://localhost:5173")
    refused = ("http://127.0.0.1:5173", "https://app.example.evil", "http://localhost:x")
    for origin in allowed:
        assert (await post_mcp(server, PING, {"Origin": origin}))[0] == 200, origin
    for origin in refused:
        assert (await post_mcp(server, PING, {"Origin": origin}))[0] == 403, origin
    async with connect(ws_url(server.ws, "app"), origin="https://app.example") as ws:
        assert json.loads(await ws.recv())["method"] == "welcome"
