"""LLM backends for queries no pattern answers (and for patterns that failed).

`SimulatedLLM` is the default: a lognormal latency, a canned answer and the plan's baseline
charge (400 tokens), deterministic under a seed. `OpenAICompatibleLLM` posts to
`/v1/chat/completions` of the server at `TMWS_LLM_URL` and charges what the server reports
(`usage.total_tokens`); its baseline is the mean of those reports (400 until the first one).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from service.config import Settings
from service.errors import DependencyUnavailable, ToolFailed

BASELINE_TOKENS = 400
DEFAULT_MEDIAN_MS = 300.0
DEFAULT_SIGMA = 0.5
DEFAULT_MAX_MS = 4000.0
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_HTTP_TIMEOUT_S = 30.0
SYSTEM_PROMPT = "You are the TMWS assistant. Answer the agent's request concisely."


@dataclass(frozen=True)
class LLMResponse:
    text: str
    tokens_used: int
    latency_ms: float
    backend: str
    model: str
    usage: dict[str, Any] = field(default_factory=dict)


class LLMBackend(Protocol):
    name: str

    @property
    def baseline_tokens(self) -> int:
        """What one full inference costs on this backend, in tokens."""
        ...

    async def complete(self, query: str, *, context: str | None = None) -> LLMResponse:
        """Answer `query` (with optional context, e.g. why a pattern failed)."""
        ...

    async def aclose(self) -> None: ...


class SimulatedLLM:
    """Deterministic stand-in for model inference: latency ~ lognormal(median, sigma)."""

    name = "simulated"

    def __init__(
        self,
        seed: int = 0,
        *,
        median_ms: float = DEFAULT_MEDIAN_MS,
        sigma: float = DEFAULT_SIGMA,
        max_ms: float = DEFAULT_MAX_MS,
        baseline_tokens: int = BASELINE_TOKENS,
    ) -> None:
        if median_ms < 0 or sigma < 0 or max_ms < 0:
            raise ValueError("median_ms, sigma and max_ms must be >= 0")
        self.seed = seed
        self.median_ms = median_ms
        self.sigma = sigma
        self.max_ms = max_ms
        self.baseline_tokens = baseline_tokens
        self.calls = 0
        self._per_query: dict[str, int] = {}

    def latency_ms(self, query: str) -> float:
        """The latency of the next call for `query`: a pure function of (seed, query, n-th call)."""
        n = self._per_query.get(query, 0)
        digest = hashlib.sha256(f"{self.seed}\0{n}\0{query}".encode()).digest()
        rng = random.Random(int.from_bytes(digest[:8], "big"))
        if self.median_ms == 0:
            return 0.0
        return min(self.max_ms, rng.lognormvariate(math.log(self.median_ms), self.sigma))

    async def complete(self, query: str, *, context: str | None = None) -> LLMResponse:
        """Sleep the drawn latency, then answer; always charges the baseline."""
        delay_ms = self.latency_ms(query)
        self._per_query[query] = self._per_query.get(query, 0) + 1
        self.calls += 1
        started = time.perf_counter()
        await asyncio.sleep(delay_ms / 1000.0)
        text = f"[simulated LLM] answer to: {query}"
        if context:
            text += f" (context: {context})"
        return LLMResponse(
            text=text,
            tokens_used=self.baseline_tokens,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            backend=self.name,
            model=f"simulated-seed{self.seed}",
        )

    async def aclose(self) -> None:
        return None


class OpenAICompatibleLLM:
    """Any server speaking the OpenAI chat completions API (vLLM, llama.cpp, Ollama, OpenAI)."""

    name = "openai-compatible"

    def __init__(
        self,
        url: str,
        model: str = DEFAULT_MODEL,
        *,
        api_key: str | None = None,
        timeout_s: float = DEFAULT_HTTP_TIMEOUT_S,
        baseline_tokens: int = BASELINE_TOKENS,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.model = model
        self._default_baseline = baseline_tokens
        self._usage_total = 0
        self._usage_count = 0
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = client or httpx.AsyncClient(timeout=timeout_s, headers=headers)
        self._owns_client = client is None

    def request_body(self, query: str, context: str | None = None) -> dict[str, Any]:
        """The JSON body posted for `query`."""
        user = query if not context else f"{query}\n\nContext: {context}"
        return {
            "model": self.model,
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": user},
            ],
            "max_tokens": self._default_baseline,
        }

    async def complete(self, query: str, *, context: str | None = None) -> LLMResponse:
        """POST /v1/chat/completions; transport errors are `DependencyUnavailable`."""
        started = time.perf_counter()
        try:
            response = await self._client.post(
                f"{self.url}/v1/chat/completions", json=self.request_body(query, context)
            )
        except httpx.HTTPError as exc:
            raise DependencyUnavailable(
                f"LLM backend unavailable: {type(exc).__name__}: {exc}"
            ) from exc
        if response.status_code >= 500:
            raise DependencyUnavailable(f"LLM backend error: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise ToolFailed(f"LLM backend rejected the request: HTTP {response.status_code}")
        try:
            payload = response.json()
            text = payload["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ToolFailed(f"LLM backend returned an unexpected body: {exc}") from exc
        usage = dict(payload.get("usage") or {})
        reported = usage.get("total_tokens")
        if isinstance(reported, int) and not isinstance(reported, bool) and reported > 0:
            self._usage_total += reported
            self._usage_count += 1
        else:
            reported = self.baseline_tokens  # a server that reports no usage: the yardstick
        return LLMResponse(
            text=str(text),
            tokens_used=reported,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            backend=self.name,
            model=str(payload.get("model", self.model)),
            usage=usage,
        )

    @property
    def baseline_tokens(self) -> int:
        """Mean reported usage of the calls so far (the configured default before the first)."""
        if not self._usage_count:
            return self._default_baseline
        return round(self._usage_total / self._usage_count)

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def build_llm(
    settings: Settings, *, seed: int = 0, median_ms: float = DEFAULT_MEDIAN_MS
) -> LLMBackend:
    """The HTTP backend when `settings.llm_url` is set, else the simulated one."""
    if settings.llm_url:
        return OpenAICompatibleLLM(settings.llm_url)
    return SimulatedLLM(seed, median_ms=median_ms)
