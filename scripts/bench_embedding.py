"""Benchmark: what one query embedding costs, before and after the encoder changes of issue 12.

Prints, on this machine, with the real MiniLM model and TMWS_TORCH_THREADS threads (default 1):
- one text alone: `SentenceTransformer.encode` (before) against the hand-run pipeline (after);
- a batch of 16 texts, per text, both ways;
- `--arrivals` distinct texts arriving one at a time at `--rate` a second (as requests arrive
  from many sockets): the previous `Embedder` (each loop iteration's callers flushed as their
  own encode, flushes queueing on one lock; reproduced below as `LegacyEmbedder`, the code of
  commit d5b56b6) against the current one (one encode at a time, every text that arrived
  meanwhile in the next), as texts/s done and per-text latency;
- a repeated text: an LRU hit (after) against encoding it again (before).

    .venv/bin/python scripts/bench_embedding.py --rounds 40 --arrivals 300 --rate 100

`--stages` prints instead where one NEW routing query's milliseconds go (issue 13: routing under
10 ms p95, embedding included), p50/p95 over `--queries` distinct design-family queries (never
the held-out ones the latency experiment times): tokenising, the transformer forward in torch
eager (`MiniLM._encoder`) and in ONNX Runtime (its exported graph; and the largest difference of
their vectors), pooling, the whole
`encode_sync` per backend, `Embedder.embed` of an idle encoder (the thread hand-off included),
the regex triggers, the learned decision after the embedding, and `HybridRouter.route` whole.

    .venv/bin/python scripts/bench_embedding.py --stages --queries 200
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from service.config import EmbeddingSettings, Settings  # noqa: E402
from service.embedding import (  # noqa: E402
    _ENCODE_LOCK,
    Embedder,
    _direct_for,
    backend_in_use,
    encode_sync,
    load_model,
    set_torch_threads,
    use_backend,
)


def st_encode(texts: Sequence[str]) -> np.ndarray:
    """The encode of commit d5b56b6: sentence-transformers' own `encode`."""
    with _ENCODE_LOCK:
        return load_model().encode(
            list(texts),
            batch_size=64,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )


class LegacyEmbedder:
    """The coalescing of commit d5b56b6: each loop iteration's callers become one flush task;
    flushes run concurrently in threads and queue on the encode lock, one small batch each."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def embed(self, text: str) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._pending.append((text, future))
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        return await future

    def _start(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _flush(self) -> None:
        self._scheduled = False
        batch, self._pending = self._pending[:64], self._pending[64:]
        if self._pending:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)
        vectors = await asyncio.to_thread(st_encode, [t for t, _ in batch])
        for (_, future), vector in zip(batch, vectors, strict=True):
            future.set_result(vector)


def texts(n: int, tag: str) -> list[str]:
    subjects = ("database failover", "release train", "cache hit rate", "on-call rota", "billing")
    return [f"what did we note about the {subjects[i % 5]} {tag} {i} last week" for i in range(n)]


def per_call_ms(fn: Callable[[list[str]], object], batches: list[list[str]]) -> float:
    started = time.perf_counter()
    for batch in batches:
        fn(batch)
    return (time.perf_counter() - started) * 1000.0 / sum(len(b) for b in batches)


async def arrivals(
    embed: Callable[[str], Awaitable[np.ndarray]], queries: list[str], rate: float
) -> tuple[float, float, float]:
    """(texts/s, p50 ms, p95 ms) of texts arriving one by one at `rate` a second (open loop: an
    arrival never waits for earlier answers), as requests arrive from many sockets."""
    latencies: list[float] = []

    async def one(text: str) -> None:
        started = time.perf_counter()
        await embed(text)
        latencies.append((time.perf_counter() - started) * 1000.0)

    started = time.perf_counter()
    tasks = []
    for i, text in enumerate(queries):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(text)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return (
        len(queries) / elapsed,
        latencies[len(latencies) // 2],
        latencies[int(0.95 * len(latencies))],
    )


async def main_async(args: argparse.Namespace) -> None:
    settings = Settings.from_env().embedding
    embedder = Embedder(settings)
    await embedder.warm_up()
    st_encode(["warm up"])
    print(f"torch threads {settings.torch_threads}; {args.rounds} rounds; {os.cpu_count()} CPUs")

    singles = [[t] for t in texts(args.rounds, "single")]
    before = per_call_ms(st_encode, singles)
    after = per_call_ms(encode_sync, singles)
    print(
        f"one text alone         before {before:6.2f} ms   after {after:6.2f} ms   (x{before / after:.2f})"
    )

    batches = [texts(16, f"batch{r}") for r in range(max(2, args.rounds // 8))]
    before = per_call_ms(st_encode, batches)
    after = per_call_ms(encode_sync, batches)
    print(
        f"batch of 16, per text  before {before:6.2f} ms   after {after:6.2f} ms   (x{before / after:.2f})"
    )

    queries = texts(args.arrivals, "arrival")
    old_rate, old_p50, old_p95 = await arrivals(LegacyEmbedder().embed, queries, args.rate)
    fresh = Embedder(settings)
    new_rate, new_p50, new_p95 = await arrivals(fresh.embed, [q + " ." for q in queries], args.rate)
    print(
        f"{args.arrivals} texts arriving at {args.rate:g}/s  before {old_rate:5.0f}/s done "
        f"(p50 {old_p50:.0f} ms, p95 {old_p95:.0f} ms)   after {new_rate:5.0f}/s done "
        f"(p50 {new_p50:.0f} ms, p95 {new_p95:.0f} ms; mean batch {fresh.stats()['mean_batch']})"
    )

    repeat = texts(1, "repeat")[0]
    await embedder.embed(repeat)
    hit: list[float] = []
    for _ in range(args.rounds):
        started = time.perf_counter()
        await embedder.embed(repeat)
        hit.append((time.perf_counter() - started) * 1000.0)
    again = per_call_ms(st_encode, [[repeat]] * args.rounds)
    print(
        f"repeated text          before {again:6.2f} ms   after {statistics.median(hit):6.3f} ms (LRU hit)"
    )


def _p(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q))


def _row(name: str, samples: list[float]) -> None:
    print(
        f"  {name:44s} p50 {_p(samples, 50):7.3f} ms   p95 {_p(samples, 95):7.3f} ms   "
        f"mean {statistics.mean(samples):7.3f} ms"
    )


def _timed(fn: Callable[[str], object], queries: list[str]) -> list[float]:
    for query in queries[:5]:
        fn(query)  # warm: first calls of a shape allocate
    out = []
    for query in queries:
        started = time.perf_counter()
        fn(query)
        out.append((time.perf_counter() - started) * 1000.0)
    return out


async def stages_async(args: argparse.Namespace) -> None:
    """Where one new routing query's milliseconds go, stage by stage, both backends."""
    import torch

    from service.patterns import route_eval
    from service.patterns.registry import PatternRegistry
    from service.patterns.router import HybridRouter, regex_hits

    settings = Settings.from_env()
    threads = settings.embedding.torch_threads
    set_torch_threads(threads)
    queries = list(dict.fromkeys(r["query"] for r in route_eval.design_rows()))
    # A fixed spread over the design families, never the held-out set the experiment times.
    step = max(1, len(queries) // args.queries)
    queries = queries[::step][: args.queries]
    torch_direct = _direct_for("torch", threads)
    onnx_direct = _direct_for("onnx", threads)
    assert torch_direct is not None and onnx_direct is not None
    tokens = [int(torch_direct.tokenize([q])[1].sum()) for q in queries]
    print(
        f"{len(queries)} distinct design-family queries, {int(np.median(tokens))} tokens median "
        f"(max {max(tokens)}, [CLS]/[SEP] included); {threads} thread(s); {os.cpu_count()} CPUs; "
        f"onnx in use: {onnx_direct.onnx is not None}"
    )

    def tokenise(q: str) -> object:
        return torch_direct.tokenize([q])

    def forward_torch(q: str) -> object:
        ids, mask = tokenise(q)
        with torch.inference_mode():
            return torch_direct._encoder(torch.from_numpy(ids), torch.from_numpy(mask))

    def forward_onnx(q: str) -> object:
        ids, mask = tokenise(q)
        return onnx_direct.onnx.hidden(ids, mask) if onnx_direct.onnx is not None else None

    print("encoder stages (one query at a time, no cache):")
    _row("tokenise", _timed(tokenise, queries))
    _row("tokenise + forward, torch eager", _timed(forward_torch, queries))
    _row("tokenise + forward, onnx runtime", _timed(forward_onnx, queries))
    _row(
        "encode_sync, torch (+ pool, normalise)",
        _timed(lambda q: torch_direct.encode([q]), queries),
    )
    _row(
        "encode_sync, onnx (+ pool, normalise)", _timed(lambda q: onnx_direct.encode([q]), queries)
    )
    diff = np.abs(torch_direct.encode(queries[:32]) - onnx_direct.encode(queries[:32])).max()
    print(f"  largest |torch - onnx| over 32 query vectors: {diff:.1e}")
    # Under load the embedder encodes batches: the backend must not lose there either.
    batches = [queries[i : i + 16] for i in range(0, len(queries) - 15, 16)]
    for name, direct in (("torch", torch_direct), ("onnx", onnx_direct)):
        per_text = per_call_ms(direct.encode, batches)
        print(f"  batch of 16, {name:5s} per text {per_text:7.3f} ms ({len(batches)} batches)")

    registry = PatternRegistry.load(settings.patterns_path)
    patterns = list(registry.patterns)
    for backend in ("torch", "onnx"):
        use_backend(backend)
        embedder = Embedder(EmbeddingSettings(torch_threads=threads, cache_size=0, backend=backend))
        router = await HybridRouter.build(registry, embedder)
        print(f"service path, backend {backend_in_use()}:")
        idle: list[float] = []
        for q in queries:
            started = time.perf_counter()
            await embedder.embed(q + " ")  # a text it never saw: no LRU, no shared future
            idle.append((time.perf_counter() - started) * 1000.0)
        _row("Embedder.embed, idle encoder (thread hand-off)", idle)
        vectors = encode_sync(queries)
        _row("regex triggers", _timed(lambda q: regex_hits(q, patterns), queries))
        decide: list[float] = []
        for q, v in zip(queries, vectors, strict=True):
            started = time.perf_counter()
            probs = router.model.probabilities(v, q)
            named = dict(zip(router.model.classes, (float(p) for p in probs), strict=True))
            router._model_decision(v, named, router._index, "balanced")
            decide.append((time.perf_counter() - started) * 1000.0)
        _row("learned decision after the embedding", decide)
        whole: list[float] = []
        for q in queries:
            started = time.perf_counter()
            await router.route(q + "  ")
            whole.append((time.perf_counter() - started) * 1000.0)
        _row("HybridRouter.route whole (new query)", whole)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--arrivals", type=int, default=300, help="texts in the arrival test")
    parser.add_argument("--rate", type=float, default=100.0, help="their arrival rate, per s")
    parser.add_argument("--stages", action="store_true", help="one routing query, stage by stage")
    parser.add_argument("--queries", type=int, default=200, help="queries timed with --stages")
    args = parser.parse_args()
    asyncio.run(stages_async(args) if args.stages else main_async(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
