"""Benchmark: how long one full garbage collection stops a server, before and after the freeze.

Loads what an instance loads (MiniLM, the pattern catalogue and its router, the exemplar index),
then times full collections as the server had them (every tracked object scanned) and after
`service.bootstrap.freeze_startup_objects` (startup objects moved out of the collector's reach):

    .venv/bin/python scripts/bench_gc_pause.py
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from service.bootstrap import build_tool_registry, freeze_startup_objects  # noqa: E402
from service.config import Settings  # noqa: E402
from service.embedding import Embedder  # noqa: E402
from service.patterns.engine import build_pattern_engine  # noqa: E402


def full_gc_ms(rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


async def main_async() -> None:
    embedder = Embedder()
    await embedder.warm_up()
    settings = Settings()
    engine = await build_pattern_engine(settings, embedder, tools=build_tool_registry(settings))
    tracked = len(gc.get_objects())
    before = full_gc_ms(3)
    freeze_startup_objects()
    after = full_gc_ms(3)
    print(f"{tracked} tracked objects after start-up ({len(engine.registry.patterns)} patterns)")
    print(f"one full collection   before {before:7.1f} ms   after freeze {after:6.2f} ms")


if __name__ == "__main__":
    asyncio.run(main_async())
