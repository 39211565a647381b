"""A real uvicorn server on 127.0.0.1:0 with a few simple tools (no database needed here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from service.app import create_app, start_in_background, stop_background
from service.config import LimitSettings, SecuritySettings, Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.errors import DatabaseUnavailable, ExecutionTimeout, NotFound, ToolFailed
from service.tools.registry import ToolArgs, ToolRegistry

#: Events the `gate` tool waits on, so a test decides exactly when a request finishes.
GATES: dict[str, asyncio.Event] = {}


class EchoArgs(ToolArgs):
    text: str
    n: int = 1


class GateArgs(ToolArgs):
    key: str


class FailArgs(ToolArgs):
    kind: str


_FAILURES = {
    "not_found": lambda: NotFound("no such thing", {"thing": "x"}),
    "timeout": lambda: ExecutionTimeout("took too long"),
    "unavailable": lambda: DatabaseUnavailable("postgres is down"),
    "tool_failed": lambda: ToolFailed("step 2 failed", {"step": 2}),
}


def build_tools() -> ToolRegistry:
    """echo, gate (waits for its event) and fail (raises on request)."""
    tools = ToolRegistry()

    @tools.tool("echo", "Return the text and who asked.", EchoArgs)
    async def echo(ctx: CallContext, args: EchoArgs) -> dict[str, object]:
        return {"text": args.text * args.n, "agent_id": ctx.agent_id, "session_id": ctx.session_id}

    @tools.tool("gate", "Wait until the test opens the gate `key`.", GateArgs)
    async def gate(ctx: CallContext, args: GateArgs) -> dict[str, object]:
        await GATES.setdefault(args.key, asyncio.Event()).wait()
        return {"key": args.key}

    @tools.tool(
        "fail", "Fail on purpose: a TMWSError kind, or 'bug' for a plain exception.", FailArgs
    )
    async def fail(ctx: CallContext, args: FailArgs) -> dict[str, object]:
        if args.kind == "bug":
            raise ZeroDivisionError("secret internals")
        raise _FAILURES[args.kind]()

    return tools


def make_services(**limits: object) -> Services:
    settings = Settings(instance_id="tmws-test", limits=replace(LimitSettings(), **limits))
    return Services(settings=settings, tools=build_tools(), embedder=Embedder())


@dataclass
class RunningServer:
    services: Services
    port: int

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/mcp"


StartServer = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
def gates() -> dict[str, asyncio.Event]:
    """Events the `gate` tool waits on, by key."""
    return GATES


@pytest.fixture
async def start_server() -> AsyncIterator[StartServer]:
    """Start servers with given settings overrides; every one is stopped at teardown."""
    running: list[tuple[object, asyncio.Task[None]]] = []

    async def start(
        *,
        auth_secret: str | None = None,
        security: SecuritySettings | None = None,
        **limits: object,
    ) -> RunningServer:
        services = make_services(**limits)
        if auth_secret:
            services.settings = replace(services.settings, auth_secret=auth_secret)
        if security is not None:
            services.settings = replace(services.settings, security=security)
        app = create_app(services.settings, services=services)
        server, task, port = await start_in_background(app)
        running.append((server, task))
        return RunningServer(services, port)

    yield start
    for server, task in running:
        await stop_background(server, task)  # type: ignore[arg-type]
    GATES.clear()
