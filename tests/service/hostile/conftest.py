"""Servers for the hostile-input corpus: one full stack, and light servers with chosen limits.

The full stack is the real thing (PostgreSQL + pgvector, Redis, MiniLM, the pattern catalogue),
because the inputs of issue 10 failed deep inside it; its reply limit is lowered so oversized
replies are cheap to provoke. The light servers have no database: they exercise the transports'
limits (rates, batches, in-flight slots, connection caps, Origin) with a few toy tools.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.app import create_app, start_in_background, stop_background
from service.config import LimitSettings, SecuritySettings, Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.tools.registry import ToolArgs, ToolRegistry

#: The full stack's reply limit: small enough to exceed with a few tasks.
STACK_MAX_REPLY_BYTES = 256 << 10
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


@dataclass
class Server:
    settings: Settings
    port: int
    services: Services | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/mcp"

    @property
    def mcp(self) -> str:
        return f"{self.http}/mcp"


async def post_mcp(
    server: Server, body: str | bytes, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    """POST a raw body to /mcp; (HTTP status, decoded JSON body or the raw text)."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    async with httpx.AsyncClient(timeout=60) as http:
        response = await http.post(
            server.mcp, content=raw, headers={**MCP_HEADERS, **(headers or {})}
        )
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


async def mcp_still_serves(server: Server) -> None:
    """The endpoint answers a well-formed request after whatever came before."""
    status, body = await post_mcp(
        server, json.dumps({"jsonrpc": "2.0", "id": "after", "method": "tools/list"})
    )
    assert status == 200, body
    assert body["id"] == "after" and body["result"]["tools"], body


@pytest.fixture(scope="package")
async def stack(infra: Any, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Server]:
    """One full server on the shared infrastructure, with test patterns (slow_tool)."""
    settings = Settings(
        instance_id="tmws-hostile",
        state_dir=tmp_path_factory.mktemp("hostile-state"),
        enable_test_patterns=True,
        limits=replace(LimitSettings(), max_reply_bytes=STACK_MAX_REPLY_BYTES),
    ).with_urls(infra.database_url, infra.redis_url)
    app = create_app(settings)
    server, task, port = await start_in_background(app, settings=settings)
    try:
        yield Server(settings, port, app.state.services)
    finally:
        await stop_background(server, task)


# ---------------------------------------------------------------- light servers


class TextArgs(ToolArgs):
    text: str


class GateArgs(ToolArgs):
    key: str


@dataclass
class Gates:
    """Events a `gate` call waits on, and how many gate calls ran at once at most."""

    events: dict[str, asyncio.Event] = field(default_factory=dict)
    started: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    running: int = 0
    peak: int = 0

    def event(self, key: str) -> asyncio.Event:
        return self.events.setdefault(key, asyncio.Event())

    async def wait_started(self, n: int, within_s: float = 10) -> list[str]:
        """Keys of the next `n` gate calls to start running (bounded wait)."""
        async with asyncio.timeout(within_s):
            return [await self.started.get() for _ in range(n)]


def light_tools(gates: Gates) -> ToolRegistry:
    tools = ToolRegistry()

    @tools.tool("echo", "Return the text and who asked.", TextArgs)
    async def echo(ctx: CallContext, args: TextArgs) -> dict[str, Any]:
        return {"text": args.text, "agent_id": ctx.agent_id}

    @tools.tool("gate", "Wait until the test opens the gate.", GateArgs)
    async def gate(ctx: CallContext, args: GateArgs) -> dict[str, Any]:
        gates.running += 1
        gates.peak = max(gates.peak, gates.running)
        gates.started.put_nowait(args.key)
        try:
            await gates.event(args.key).wait()
        finally:
            gates.running -= 1
        return {"key": args.key}

    return tools


StartLight = Callable[..., Awaitable[Server]]


@pytest.fixture
async def serve_stack_as(stack: Server) -> AsyncIterator[Callable[[Settings], Awaitable[Server]]]:
    """Another app over the stack's database, cache and patterns, with other settings."""
    running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(settings: Settings) -> Server:
        assert stack.services is not None
        services = replace(stack.services, settings=settings, sessions=None)
        app = create_app(settings, services=services)
        server, task, port = await start_in_background(app, settings=settings)
        running.append((server, task))
        return Server(settings, port, services)

    yield start
    for server, task in running:
        await stop_background(server, task)


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def start_light(gates: Gates, tmp_path: Path) -> AsyncIterator[StartLight]:
    """Start database-free servers with given limits, security and auth; all stopped after."""
    running: list[tuple[Any, asyncio.Task[None]]] = []

    async def start(
        *,
        auth_secret: str | None = None,
        security: SecuritySettings | None = None,
        log_level: str = "warning",
        **limits: Any,
    ) -> Server:
        settings = Settings(
            instance_id="tmws-light",
            state_dir=tmp_path,
            auth_secret=auth_secret,
            limits=replace(LimitSettings(), **limits),
            security=security or SecuritySettings(),
        )
        services = Services(settings=settings, tools=light_tools(gates), embedder=Embedder())
        app = create_app(settings, services=services)
        server, task, port = await start_in_background(app, log_level=log_level)
        running.append((server, task))
        return Server(settings, port, services)

    yield start
    for event in gates.events.values():
        event.set()
    for server, task in running:
        await stop_background(server, task)
