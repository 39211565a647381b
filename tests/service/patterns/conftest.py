"""Pattern test fixtures: a real Embedder, catalogue copies, and Services wired like the server."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.config import DEFAULT_PATTERNS_PATH, Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.llm import SimulatedLLM
from service.patterns.engine import PatternEngine, build_pattern_engine
from service.tools.pattern_tools import register_pattern_tools
from service.tools.registry import ToolRegistry

EVAL_PATH = Path(__file__).resolve().parents[3] / "configs" / "eval" / "routing_eval.jsonl"


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    return Embedder()


@pytest.fixture
def catalogue() -> dict[str, Any]:
    """The shipped catalogue as data, for tests that edit a copy."""
    return yaml.safe_load(DEFAULT_PATTERNS_PATH.read_text(encoding="utf-8"))


WriteCatalogue = Callable[[dict[str, Any]], Path]


@pytest.fixture
def write_catalogue(tmp_path: Path) -> WriteCatalogue:
    """Write an (edited) catalogue to a temp file and return its path."""

    def write(data: dict[str, Any]) -> Path:
        path = tmp_path / f"patterns-{uuid.uuid4().hex[:6]}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
        return path

    return write


async def _make_services(
    embedder: Embedder,
    *,
    patterns_path: Path = DEFAULT_PATTERNS_PATH,
    db: Any = None,
    cache: Any = None,
    extra_tools: Callable[[ToolRegistry], None] | None = None,
) -> Services:
    """Services as the server builds them: test patterns on, a fast simulated LLM."""
    settings = Settings(patterns_path=patterns_path, enable_test_patterns=True)
    tools = ToolRegistry()
    if extra_tools is not None:
        extra_tools(tools)
    register_pattern_tools(tools, enable_test_tools=True)
    llm = SimulatedLLM(seed=7, median_ms=1.0, sigma=0.2)
    engine: PatternEngine = await build_pattern_engine(
        settings, embedder, tools=tools, cache=cache, db=db, llm=llm
    )
    return Services(
        settings=settings,
        tools=tools,
        embedder=embedder,
        db=db,
        cache=cache,
        patterns=engine,
        llm=llm,
    )


def _context(services: Services, agent_id: str | None = None) -> CallContext:
    agent = agent_id or f"agent-{uuid.uuid4().hex[:8]}"
    return CallContext(
        agent_id=agent, session_id=f"s-{agent}", instance_id=services.instance_id, services=services
    )


@pytest.fixture
def make_services() -> Callable[..., Any]:
    """`await make_services(embedder, patterns_path=..., db=..., cache=..., extra_tools=...)`."""
    return _make_services


@pytest.fixture
def make_context() -> Callable[..., CallContext]:
    """`make_context(services, agent_id=None)`: a session context with its own namespace."""
    return _context


@pytest.fixture
def pattern_spec() -> Callable[[dict[str, Any], str], dict[str, Any]]:
    """`pattern_spec(catalogue, name)`: the mutable spec of one pattern in a catalogue copy."""

    def find(data: dict[str, Any], name: str) -> dict[str, Any]:
        return next(p for p in data["patterns"] if p["name"] == name)

    return find
