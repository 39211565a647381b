"""LLM backends (simulated; OpenAI-compatible against a tiny local HTTP server), token
accounting, and the `tmws route` command."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from service.embedding import count_tokens
from service.errors import DependencyUnavailable, ToolFailed
from service.llm import OpenAICompatibleLLM, SimulatedLLM
from service.patterns import route_cli
from service.patterns.tokens import (
    compact,
    render_prompt,
    token_report,
    truncate_tokens,
)


async def test_simulated_llm_is_deterministic_under_a_seed() -> None:
    a, b, c = (
        SimulatedLLM(1, median_ms=2.0),
        SimulatedLLM(1, median_ms=2.0),
        SimulatedLLM(2, median_ms=2.0),
    )
    draws_a = [a.latency_ms(q) for q in ("x", "y", "z")]
    assert draws_a == [b.latency_ms(q) for q in ("x", "y", "z")]
    assert draws_a != [c.latency_ms(q) for q in ("x", "y", "z")]
    first = await a.complete("hello")
    assert first.tokens_used == 400 and first.backend == "simulated"
    assert a.latency_ms("hello") != draws_a[0]  # the next call for a query draws anew
    many = sorted(SimulatedLLM(3, median_ms=300.0).latency_ms(f"q{i}") for i in range(201))
    print(f"\nsimulated latency median {many[100]:.1f} ms, p95 {many[190]:.1f} ms")
    assert 200 < many[100] < 450


class _TinyServer:
    """A one-route HTTP/1.1 server on 127.0.0.1 answering with a canned status and body."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status, self.body = status, body
        self.requests: list[dict[str, object]] = []
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        length = next(int(h.split(":")[1]) for h in lines if h.lower().startswith("content-length"))
        payload = await reader.readexactly(length)
        self.requests.append({"line": lines[0], "json": json.loads(payload)})
        writer.write(
            f"HTTP/1.1 {self.status} X\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(self.body)}\r\nConnection: close\r\n\r\n".encode()
            + self.body
        )
        await writer.drain()
        writer.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


@pytest.fixture
async def tiny_server() -> AsyncIterator[_TinyServer]:
    body = {
        "model": "m1",
        "choices": [{"message": {"content": "hi there"}}],
        "usage": {"total_tokens": 57},
    }
    server = _TinyServer(200, json.dumps(body).encode())
    server.server = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    try:
        yield server
    finally:
        server.server.close()
        await server.server.wait_closed()


async def test_openai_compatible_backend(tiny_server: _TinyServer) -> None:
    llm = OpenAICompatibleLLM(tiny_server.url, "m1")
    try:
        assert llm.baseline_tokens == 400  # nothing reported yet: the plan's yardstick
        response = await llm.complete("what is up", context="pattern x failed")
        # A real backend is charged what it reports, and its baseline is what it reported.
        assert (response.text, response.model, response.tokens_used) == ("hi there", "m1", 57)
        assert response.usage == {"total_tokens": 57} and llm.baseline_tokens == 57
        sent = tiny_server.requests[0]
        assert sent["line"] == "POST /v1/chat/completions HTTP/1.1"
        body = sent["json"]
        assert body["model"] == "m1" and body["messages"][-1]["content"].startswith("what is up")  # type: ignore[index]
        tiny_server.status, tiny_server.body = 503, b"{}"
        with pytest.raises(DependencyUnavailable):
            await llm.complete("again")
        tiny_server.status, tiny_server.body = 200, b'{"nope": 1}'
        with pytest.raises(ToolFailed, match="unexpected body"):
            await llm.complete("again")
    finally:
        await llm.aclose()


async def test_openai_compatible_backend_refused() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    llm = OpenAICompatibleLLM(f"http://127.0.0.1:{port}", timeout_s=2.0)
    try:
        with pytest.raises(DependencyUnavailable, match="unavailable"):
            await llm.complete("anyone there")
    finally:
        await llm.aclose()


def test_render_prompt_measures_the_whole_prompt_and_cuts_only_over_budget() -> None:
    result = {"output": {"results": [{"content": "word " * 200, "similarity": 0.91234}] * 8}}
    template = "Q: {query}\nData: {result}\nAnswer."
    whole = template.format(
        query="a long question " * 30, result=compact(result, max_items=None, max_str=None)
    )
    for budget in (30, 80, 150):
        prompt = render_prompt(
            template, query="a long question " * 30, result=result, budget=budget
        )
        assert budget - 2 <= prompt.tokens <= budget and prompt.truncated
        # The untrimmed count is the whole result's prompt: all 8 items, full strings.
        assert prompt.untrimmed_tokens == count_tokens(whole) > 1600
    small = render_prompt("Q: {query} {result}", query="hi", result={"up": True}, budget=80)
    assert small.tokens == small.untrimmed_tokens < 20 and not small.truncated
    assert small.text == "Q: hi up=True"


def test_compact_and_truncate() -> None:
    text = compact({"a": 1.234567, "embedding": [1.0], "items": list(range(10)), "none": None})
    assert text == "a=1.235; items=[0 | 1 | 2 | 3 | 4 | 5 +4]"
    # The data, not how it is kept: rows lose ids and bookkeeping, envelopes are inlined, usual
    # flags unsaid; a single object keeps its identity ("who am I").
    tool = {
        "tool": "list_tasks",
        "output": {
            "tasks": [{"task_id": "9bb0", "title": "Tune HNSW", "created_at": "2026", "ok": True}],
            "count": 1,
        },
        "partial": False,
        "ok": False,
    }
    assert compact(tool) == "tasks=[title=Tune HNSW]; ok=False"
    assert compact({"agent_id": "a-1", "similarity": 0.48641}) == "agent_id=a-1; similarity=0.49"
    assert compact(list(range(10)), max_items=None) == "[0 | 1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9]"
    assert compact("x" * 300, max_str=None) == "x" * 300
    assert truncate_tokens("one two three four", 2) == "one two"


def test_token_report_from_rows() -> None:
    rows = [
        {
            "pattern_type": "infrastructure",
            "route": "infrastructure",
            "tokens_used": 30,
            "tokens_baseline": 400,
        },
        {"pattern_type": "memory", "route": "memory", "tokens_used": 80, "tokens_baseline": 400},
        {"pattern_type": "hybrid", "route": "hybrid", "tokens_used": 150, "tokens_baseline": 400},
        {
            "pattern_type": "hybrid",
            "route": "llm_fallback",
            "tokens_used": 400,
            "tokens_baseline": 400,
        },
        {
            "pattern_type": "memory",
            "route": "memory",
            "tokens_used": 80,
            "tokens_untrimmed": 230,
            "truncated": True,
            "tokens_baseline": 400,
            "cache_hit": True,
        },
        {
            "pattern_type": "memory",
            "route": "memory",
            "tokens_used": 0,
            "tokens_baseline": 400,
            "success": False,
        },
    ]
    report = token_report(rows)
    assert report["requests"] == 5
    assert report["reduction"] == round(1 - 740 / 2000, 4)
    assert report["reduction_untrimmed"] == round(1 - 890 / 2000, 4)
    assert report["truncation_rate"] == 0.2
    assert report["by_type"]["llm_fallback"]["tokens_used"] == 400
    cached = report["by_type"]["memory(cache)"]
    assert (cached["mean_tokens_used"], cached["mean_tokens_untrimmed"]) == (80, 230)
    assert cached["truncation_rate"] == 1.0


def test_route_cli_prints_one_line_per_query(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "q.jsonl"
    lines = [
        json.dumps({"query": "execute tool test", "route": "infrastructure"}),
        "not json at all",
        json.dumps({"nope": 1}),
        json.dumps({"query": "write a sonnet about the moon", "route": "llm"}),
        json.dumps({"query": "remember that lunch is at noon", "route": "memory"}),
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert route_cli.main(["--jsonl", str(path), "--eval"]) == 0
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 5
    assert rows[1] == {"line": 2, "error": rows[1]["error"]} and "not JSON" in rows[1]["error"]
    assert "query" in rows[2]["error"]
    good = [rows[0], rows[3], rows[4]]
    assert [r["route"] for r in good] == ["infrastructure", "llm", "memory"]
    assert all({"query", "route", "pattern_name", "confidence"} <= r.keys() for r in good)
    summary = json.loads(err[err.index("{") :])
    assert summary["labelled"] == 3 and summary["accuracy"]["accuracy"] == 1.0


def test_route_cli_bad_model_or_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert route_cli.main(["--eval", "--model", str(tmp_path / "absent.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "router model not found" in err
    assert route_cli.main(["--jsonl", str(tmp_path / "absent.jsonl")]) == 2
    assert "absent.jsonl" in capsys.readouterr().err
