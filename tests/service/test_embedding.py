"""The encoder front: coalesced encodes, the query LRU, and the hand-run pipeline (real MiniLM)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from service.config import EmbeddingSettings
from service.embed_cache import MAX_KEY_CHARS, VectorCache
from service.embedding import Embedder, encode_sync, length_groups, load_model
from service.timings import timed_request

SHORT = [f"what did we decide about release {i}" for i in range(24)]


def test_hand_run_pipeline_equals_sentence_transformers() -> None:
    texts = ["ok", "is the database healthy", "word " * 400, *SHORT[:5], "ünïcödé notes ✓"]
    expected = load_model().encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    got = encode_sync(texts)
    assert got.shape == (len(texts), 384)
    assert np.allclose(got, expected, atol=1e-5)
    assert encode_sync([]).shape == (0, 384)


def test_length_groups_keep_long_texts_apart() -> None:
    texts = ["a" * 10, "b" * 3000, "c" * 20, "d" * 200, "e" * 300]
    groups = length_groups(texts)
    assert sorted(i for g in groups for i in g) == list(range(len(texts)))
    assert [0, 2] in groups  # short texts share a group
    assert [1] in groups  # the long one pads nobody
    assert [3, 4] in groups  # within twice the length of each other


async def test_concurrent_callers_share_batched_encodes() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=0))
    vectors = await asyncio.gather(*(embedder.embed(t) for t in SHORT))
    assert np.allclose(np.stack(vectors), encode_sync(SHORT), atol=1e-5)
    assert embedder.encoded_texts == len(SHORT)
    assert embedder.encodes < len(SHORT)  # coalesced, not one encode per caller
    assert embedder.largest_batch > 1


async def test_batches_are_bounded_by_max_batch() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=0, max_batch=4))
    await asyncio.gather(*(embedder.embed(t) for t in SHORT))
    assert embedder.largest_batch == 4
    assert embedder.encodes >= len(SHORT) // 4


async def test_identical_texts_are_encoded_once() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=0))
    vectors = await asyncio.gather(*(embedder.embed("same question") for _ in range(10)))
    assert embedder.encoded_texts == 1
    assert all(v is vectors[0] for v in vectors)


async def test_repeated_text_is_answered_from_the_lru() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=2))
    first = await embedder.embed("alpha")
    again = await embedder.embed("alpha")
    assert again is first and embedder.encoded_texts == 1
    assert embedder.cache.stats()["hits"] == 1
    with pytest.raises(ValueError):
        first[0] = 1.0  # shared vectors are read-only
    await embedder.embed("beta")
    await embedder.embed("gamma")  # evicts alpha, the least recently used
    assert len(embedder.cache) == 2
    await embedder.embed("alpha")
    assert embedder.encoded_texts == 4  # alpha was encoded again


async def test_long_texts_are_not_kept() -> None:
    embedder = Embedder()
    text = "x" * (MAX_KEY_CHARS + 1)
    await embedder.embed(text)
    await embedder.embed(text)
    assert embedder.encoded_texts == 2 and len(embedder.cache) == 0


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=0))
    quitter = asyncio.ensure_future(embedder.embed("shared text"))
    stayer = asyncio.ensure_future(embedder.embed("shared text"))
    await asyncio.sleep(0)
    quitter.cancel()
    vector = await asyncio.wait_for(stayer, 30)
    assert vector.shape == (384,)
    assert quitter.cancelled()
    assert embedder.queued == 0


async def test_embed_time_is_charged_to_the_request_being_timed() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=0))
    with timed_request() as timer:
        await embedder.embed("time me")
    assert timer.stages["embed"] > 0
    await embedder.embed("nobody times me")  # no current request: nothing to charge, no error


def test_vector_cache_refuses_a_negative_size() -> None:
    with pytest.raises(ValueError):
        VectorCache(-1)


async def test_a_stopped_worker_fails_its_waiters_and_leaves_nothing_stale() -> None:
    embedder = Embedder(EmbeddingSettings(cache_size=0))
    waiting = asyncio.ensure_future(embedder.embed("interrupted text"))
    await asyncio.sleep(0)  # the worker starts and hands the text to a thread
    worker = embedder._worker
    assert worker is not None
    worker.cancel()
    with pytest.raises(RuntimeError, match="embedder stopped"):
        await asyncio.wait_for(waiting, 30)
    vector = await asyncio.wait_for(embedder.embed("interrupted text"), 30)  # encoded afresh
    assert vector.shape == (384,)
