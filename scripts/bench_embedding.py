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

from service.config import Settings  # noqa: E402
from service.embedding import _ENCODE_LOCK, Embedder, encode_sync, load_model  # noqa: E402


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--arrivals", type=int, default=300, help="texts in the arrival test")
    parser.add_argument("--rate", type=float, default=100.0, help="their arrival rate, per s")
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
