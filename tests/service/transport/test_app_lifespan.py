"""`create_app(settings)` building its own services through bootstrap, on the real infrastructure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from mcp import Client

from service.app import create_app, start_in_background, stop_background
from service.client import WsClient
from service.config import Settings


async def test_full_stack_store_then_recall_over_both_transports(
    infra: Any, tmp_path: Path
) -> None:
    settings = Settings(instance_id="tmws-lifespan", state_dir=tmp_path).with_urls(
        infra.database_url, infra.redis_url
    )
    app = create_app(settings)
    server, task, port = await start_in_background(app, settings=settings)
    try:
        async with httpx.AsyncClient() as http:
            health = (await http.get(f"http://127.0.0.1:{port}/health")).json()
        assert health["status"] == "ok", health
        assert health["postgres"] == "ok"
        assert health["auth"] == "disabled (open)"

        async with await WsClient.connect(f"ws://127.0.0.1:{port}", "lifespan-agent") as client:
            text = "the lighthouse keeper logs every passing ship at dawn"
            await client.call("store_memory", {"content": text, "tags": ["log"]})
            found = await client.call(
                "recall_memory", {"query": "who records ships in the morning"}
            )
            assert found["results"][0]["content"] == text

        async with Client(f"http://127.0.0.1:{port}/mcp") as mcp_client:
            names = {t.name for t in (await mcp_client.list_tools()).tools}
            assert {"store_memory", "recall_memory"} <= names
            stored = await mcp_client.call_tool("store_memory", {"content": "sdk wrote this"})
            assert stored.is_error is False
            recalled = await mcp_client.call_tool("recall_memory", {"query": "sdk wrote this"})
            assert recalled.is_error is False
            assert recalled.structured_content["results"][0]["content"] == "sdk wrote this"
    finally:
        await stop_background(server, task)


def test_serve_runs_on_uvloop_unless_switched_off() -> None:
    import uvloop

    from service.app import loop_factory

    assert loop_factory(Settings.from_env({})) is uvloop.new_event_loop
    assert loop_factory(Settings.from_env({"TMWS_UVLOOP": "false"})) is None
