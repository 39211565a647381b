"""`execute_pattern` orchestration: route → cache → executor (with timeout) → tokens → record.

A query the router sends to the LLM is answered by the LLM backend and charged the baseline.
A pattern that fails (tool error, missing tool) falls back to the LLM and the failure is
recorded; a timeout or an unavailable database is reported to the client instead, because
those are what the client must see (integration test plan 6.1, 6.2).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.bugs import NO_BUGS, InjectedBugs
from service.cache import GLOBAL_NAMESPACE
from service.config import Settings
from service.context import CallContext
from service.errors import (
    DependencyUnavailable,
    ExecutionTimeout,
    PoolExhausted,
    TMWSError,
    lost_dependency,
)
from service.llm import LLMBackend, build_llm
from service.namespaces import resolve_namespace
from service.patterns.executors import ToolRunner, run_pattern
from service.patterns.registry import Pattern, PatternRegistry
from service.patterns.router import DEFAULT_THRESHOLD, EmbedderLike, HybridRouter, RouteDecision
from service.patterns.stats import PatternStats
from service.patterns.tokens import render_prompt
from service.store.executions import writer_for
from service.timings import add_stage, timed_request
from service.timings import current as current_timer

if TYPE_CHECKING:
    from service.cache.coherent import CoherentCache
    from service.store.db import Database

log = logging.getLogger(__name__)

#: Failures the client must see as errors; every other pattern failure falls back to the LLM.
#: Errors the client must see as they are: the LLM would hide a dead or saturated dependency.
NO_FALLBACK: tuple[type[TMWSError], ...] = (ExecutionTimeout, DependencyUnavailable, PoolExhausted)


class _ExecutorFailed(Exception):
    """An executor's error on its way through the cache: marks it as the pattern's, not the cache's."""

    def __init__(self, error: TMWSError) -> None:
        super().__init__(error)
        self.error = error


@dataclass
class _Outcome:
    """What one execution produced, before it becomes the wire result."""

    route: str
    success: bool
    result: Any
    tokens_used: int
    #: tokens of the prompt built from the whole result (None: same as tokens_used)
    tokens_untrimmed: int | None = None
    truncated: bool = False
    cache_hit: bool = False
    cache_tier: str = "none"
    version: int | None = None
    global_version: int | None = None
    degraded: bool = False
    fallback: bool = False
    partial: bool = False
    error: str | None = None


class PatternEngine:
    """Owns the registry, router, statistics and LLM backend of one service instance.

    Built with everything it reaches below it: the tools its patterns run, the cache that holds
    their answers and the database that takes the learning record (either may be None: a server
    without them computes every answer and records nothing).
    """

    def __init__(
        self,
        registry: PatternRegistry,
        router: HybridRouter,
        stats: PatternStats,
        llm: LLMBackend,
        *,
        tools: ToolRunner,
        cache: CoherentCache | None = None,
        db: Database | None = None,
        bugs: InjectedBugs = NO_BUGS,
        baseline_tokens: int | None = None,
        record_waits_on_hits: bool = False,
    ) -> None:
        self.registry = registry
        self.router = router
        self.stats = stats
        self.llm = llm
        self.tools = tools
        self.cache = cache
        self.db = db
        self._bugs = bugs
        self._baseline_tokens = baseline_tokens
        #: a cache hit waits for its learning row's commit too (`TMWS_RECORD_WAITS_ON_HITS`)
        self._record_waits_on_hits = record_waits_on_hits
        #: learning-record writes of cache hits, not awaited by their answers (held until done)
        self._behind: set[asyncio.Task[None]] = set()

    @property
    def baseline_tokens(self) -> int:
        """What full LLM inference costs: the plan's 400 for the simulated backend, the mean
        usage a real backend reported (unless fixed at construction)."""
        return self._baseline_tokens or self.llm.baseline_tokens

    @property
    def version(self) -> int:
        return self.registry.version

    async def reload(self, path: str | Path | None = None) -> int:
        """Re-read the catalogue, re-embed exemplars; returns the new registry version."""
        version = self.registry.reload(path)
        await self.router.refresh()
        return version

    async def route(self, query: str, mode: str = "balanced") -> RouteDecision:
        return await self.router.route(query, mode)

    async def execute(
        self,
        ctx: CallContext,
        *,
        query: str,
        execution_mode: str = "balanced",
        use_cache: bool = True,
        namespace: str | None = None,
    ) -> dict[str, Any]:
        """Run one query end to end and return the `execute_pattern` result."""
        namespace = resolve_namespace(ctx, namespace)
        if namespace != ctx.namespace:
            # A team namespace: the pattern's tools (recall, store) act on it, not the caller's own.
            ctx = dataclasses.replace(ctx, namespace=namespace)
        with timed_request() as timer:
            started = time.perf_counter()
            decision = await self.router.route(query, execution_mode)
            route_ms = (time.perf_counter() - started) * 1000.0  # routing, embedding included
            timer.add("route", route_ms)
            pattern = (
                None if decision.route == "llm" else self.registry.get(decision.pattern_name or "")
            )
            try:
                if pattern is None:
                    with timer.stage("llm"):
                        outcome = await self._llm(query, route="llm")
                else:
                    outcome = await self._pattern(
                        ctx, pattern, decision, query, namespace, use_cache
                    )
            except TMWSError as exc:
                elapsed = (time.perf_counter() - started) * 1000.0
                await self._record(
                    ctx, pattern, decision, execution_mode, namespace, elapsed, error=exc
                )
                raise
            elapsed = (time.perf_counter() - started) * 1000.0
            with timer.stage("record"):
                await self._record(
                    ctx, pattern, decision, execution_mode, namespace, elapsed, outcome=outcome
                )
            timings = timer.rounded()
            timings["total"] = round((time.perf_counter() - started) * 1000.0, 3)
        ctx.services.metrics.observe_pattern(timings, outcome.cache_tier)
        return {
            "success": outcome.success,
            "pattern_name": pattern.name if pattern else None,
            "pattern_type": pattern.type if pattern else None,
            "route": outcome.route,
            "fallback": outcome.fallback,
            "confidence": decision.confidence,
            "matched_by": decision.matched_by,
            "execution_mode": execution_mode,
            "execution_time_ms": round(elapsed, 3),
            "route_ms": round(route_ms, 3),
            "tokens_used": outcome.tokens_used,
            "tokens_untrimmed": _untrimmed(outcome),
            "truncated": outcome.truncated,
            "tokens_baseline": self.baseline_tokens,
            "cache_hit": outcome.cache_hit,
            "cache_tier": outcome.cache_tier,
            "instance_id": ctx.instance_id,
            "version": outcome.version,
            "global_version": outcome.global_version,
            "registry_version": self.registry.version,
            "degraded": outcome.degraded,
            "partial": outcome.partial,
            "namespace": namespace,
            "error": outcome.error,
            "result": outcome.result,
            # Server stage timings, ms (README "Where the time goes"): queue (WebSocket frame
            # read -> engine start), route (embed included), embed (every encode wait: routing
            # and recall), cache (lookups and fills, the executor excluded), execute (the
            # pattern's tools), db (recall's pool wait + SQL, inside execute), llm, record (the
            # learning record), total (the engine's own). Absent stages did not run.
            "timings": timings,
        }

    async def _pattern(
        self,
        ctx: CallContext,
        pattern: Pattern,
        decision: RouteDecision,
        query: str,
        namespace: str,
        use_cache: bool,
    ) -> _Outcome:
        compute = self._computer(ctx, pattern, decision, query)
        cache = self.cache
        try:
            if cache is not None and use_cache and pattern.cacheable:
                return await self._cached(cache, pattern, query, namespace, compute)
            return self._computed(pattern, await compute())
        except _ExecutorFailed as failed:
            # The cache raises no Redis failure of its own (it answers degraded instead); what
            # comes wrapped is the executor's, also for callers that joined its flight.
            return await self._after_failure(failed.error, pattern, query)

    async def _after_failure(self, exc: TMWSError, pattern: Pattern, query: str) -> _Outcome:
        """The executor failed: timeouts and lost dependencies go to the client, the rest to the LLM."""
        if isinstance(exc, NO_FALLBACK):
            raise exc
        fallback = await self._llm(
            query, route="llm_fallback", context=f"pattern {pattern.name} failed"
        )
        fallback.fallback = True
        fallback.error = f"{exc.reason}: {exc.message}"
        return fallback

    def _computer(
        self,
        ctx: CallContext,
        pattern: Pattern,
        decision: RouteDecision,
        query: str,
    ) -> Callable[[], Awaitable[dict[str, Any]]]:
        async def compute() -> dict[str, Any]:
            started = time.perf_counter()
            try:
                result = await run_pattern(
                    pattern, query, decision.groups, ctx, self.tools, bugs=self._bugs
                )
            except TMWSError as exc:
                add_stage("execute", (time.perf_counter() - started) * 1000.0)
                if lost_dependency(exc) or isinstance(exc, PoolExhausted):
                    # A lost or saturated database says nothing about the pattern: counting it would
                    # demote every memory pattern during an outage, hide the -32002 behind LLM
                    # answers, and keep the pattern demoted after the dependency is back.
                    raise _ExecutorFailed(exc) from exc
                self.stats.record(
                    pattern.name,
                    success=False,
                    latency_ms=(time.perf_counter() - started) * 1000.0,
                    error=f"{exc.reason}: {exc.message}",
                    timeout=isinstance(exc, ExecutionTimeout),
                    fallback=not isinstance(exc, NO_FALLBACK),
                )
                raise _ExecutorFailed(exc) from exc
            executed_ms = (time.perf_counter() - started) * 1000.0
            add_stage("execute", executed_ms)
            self.stats.record(pattern.name, success=True, latency_ms=executed_ms)
            prompt = render_prompt(
                pattern.template,
                query=query,
                result=result,
                budget=pattern.token_budget,
                pattern=pattern.name,
            )
            # The token counts travel with the cached value: a hit repeats this prompt.
            return {
                "result": result,
                "tokens_used": prompt.tokens,
                "tokens_untrimmed": prompt.untrimmed_tokens,
                "truncated": prompt.truncated,
                "partial": bool(result.get("partial")),
            }

        return compute

    async def _cached(
        self,
        cache: CoherentCache,
        pattern: Pattern,
        query: str,
        namespace: str,
        compute: Callable[[], Awaitable[dict[str, Any]]],
    ) -> _Outcome:
        key_parts = {
            "query": query,
            "pattern": pattern.name,
            "registry_version": self.registry.version,
        }
        scope = GLOBAL_NAMESPACE if pattern.cache_scope == "global" else namespace
        timer = current_timer()
        executed_before = timer.stages.get("execute", 0.0) if timer else 0.0
        started = time.perf_counter()
        try:
            res = await cache.get_or_compute(scope, key_parts, compute, ttl_s=pattern.cache_ttl_s)
        finally:
            if timer is not None:
                executed = timer.stages.get("execute", 0.0) - executed_before
                timer.add("cache", (time.perf_counter() - started) * 1000.0 - executed)
        value = res.value
        if res.hit:
            self.stats.record_hit(pattern.name)
        return _Outcome(
            route=pattern.type,
            success=True,
            result=value["result"],
            **_token_fields(value),
            cache_hit=bool(res.hit),
            cache_tier=str(res.tier),
            version=res.generation,
            global_version=res.global_generation,
            degraded=bool(res.degraded),
            partial=bool(value.get("partial")),
        )

    def _computed(self, pattern: Pattern, value: dict[str, Any]) -> _Outcome:
        return _Outcome(
            route=pattern.type,
            success=True,
            result=value["result"],
            **_token_fields(value),
            partial=bool(value.get("partial")),
        )

    async def _llm(self, query: str, *, route: str, context: str | None = None) -> _Outcome:
        response = await self.llm.complete(query, context=context)
        return _Outcome(
            route=route,
            success=True,
            result={"answer": response.text, "backend": response.backend, "model": response.model},
            tokens_used=response.tokens_used,
        )

    async def _record(
        self,
        ctx: CallContext,
        pattern: Pattern | None,
        decision: RouteDecision,
        mode: str,
        namespace: str,
        latency_ms: float,
        *,
        outcome: _Outcome | None = None,
        error: TMWSError | None = None,
    ) -> None:
        """Queue the learning-record row (write-behind: waits at most ~0.1 s for its commit, then
        it is retried until PostgreSQL takes it; a cache hit does not wait unless
        `TMWS_RECORD_WAITS_ON_HITS`); it never fails the request it describes."""
        db = self.db
        if db is None:
            return
        if outcome is not None:
            success, err = (not outcome.fallback), outcome.error
        else:
            success, err = False, f"{error.reason}: {error.message}" if error else "unknown"
        recorded = writer_for(db).record(
            agent_id=ctx.agent_id,
            instance_id=ctx.instance_id,
            namespace=namespace,
            pattern_name=pattern.name if pattern else "llm",
            pattern_type=pattern.type if pattern else "llm",
            route=outcome.route if outcome else decision.route,
            execution_mode=mode,
            success=success,
            error=err,
            latency_ms=latency_ms,
            tokens_used=outcome.tokens_used if outcome else 0,
            tokens_baseline=self.baseline_tokens,
            cache_hit=outcome.cache_hit if outcome else False,
            cache_tier=outcome.cache_tier if outcome else "none",
        )
        hit = outcome is not None and outcome.cache_hit
        if hit and not self._record_waits_on_hits:
            # A cache hit does not wait for its row's commit: the row is queued now and written
            # behind (bounded queue, retried). Risk: a crash loses the hits of the last group
            # commit (milliseconds), and the row shows a few ms after the answer. Misses,
            # fallbacks and failures still wait, so their rows are there when the answer is.
            task = asyncio.ensure_future(_quietly(recorded))
            self._behind.add(task)
            task.add_done_callback(self._behind.discard)
            return
        await _quietly(recorded)


async def _quietly(recorded: Awaitable[Any]) -> None:
    """Await a learning-record write; losing the row must not fail (or escape) anything."""
    try:
        await recorded
    except TMWSError as exc:
        log.warning("learning record not written: %s", exc)


def _token_fields(value: dict[str, Any]) -> dict[str, Any]:
    """The token counts a computed (or cached) value carries."""
    used = int(value["tokens_used"])
    untrimmed = value.get("tokens_untrimmed")
    return {
        "tokens_used": used,
        "tokens_untrimmed": used if untrimmed is None else int(untrimmed),
        "truncated": bool(value.get("truncated", False)),
    }


def _untrimmed(outcome: _Outcome) -> int:
    return outcome.tokens_used if outcome.tokens_untrimmed is None else outcome.tokens_untrimmed


async def build_pattern_engine(
    settings: Settings,
    embedder: EmbedderLike,
    *,
    tools: ToolRunner,
    cache: CoherentCache | None = None,
    db: Database | None = None,
    llm: LLMBackend | None = None,
    enable_test_patterns: bool | None = None,
    threshold: float | None = DEFAULT_THRESHOLD,
) -> PatternEngine:
    """Load the catalogue at `settings.patterns_path`, embed its exemplars, pick the LLM backend;
    the engine runs `tools`, caches in `cache` and records into `db`."""
    include_test = (
        settings.enable_test_patterns if enable_test_patterns is None else enable_test_patterns
    )
    registry = PatternRegistry.load(settings.patterns_path, include_test=include_test)
    stats = PatternStats()
    router = await HybridRouter.build(registry, embedder, stats=stats, threshold=threshold)
    return PatternEngine(
        registry,
        router,
        stats,
        llm or build_llm(settings),
        tools=tools,
        cache=cache,
        db=db,
        bugs=settings.bugs,
        record_waits_on_hits=settings.record_waits_on_hits,
    )
