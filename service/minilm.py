"""The bundled sentence-transformers model run with torch alone: its tokenizer (`tokenizers`), its
BERT encoder (weights read with `safetensors`), mean pooling and L2 normalisation.

Why not `SentenceTransformer` or `transformers.BertModel`: importing them costs ~7 s of CPU a
process (sentence-transformers pulls in transformers' model loading, scikit-learn and scipy), more
than everything else a TMWS server does at start-up together; three instances starting on two cores
waited ~20 s for it. This module needs torch (~2 s) and nothing else heavy, and computes the same
vectors (tests/service/test_embedding.py holds it equal to `SentenceTransformer.encode`).

`read_layout` says whether a model folder is the layout run here (a BERT encoder, mean pooling,
normalisation); any other layout is left to sentence-transformers (`service.embedding`).
`MiniLM.with_onnx` gives the same pipeline with its encoder run by ONNX Runtime
(`service.onnx_encoder`, exported from `MiniLM._encoder` itself).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: The sentence-transformers stages this module runs, in order.
STAGES = (
    "sentence_transformers.models.Transformer",
    "sentence_transformers.models.Pooling",
    "sentence_transformers.models.Normalize",
)


_REQUIRED = (
    "embeddings.word_embeddings.weight",
    "embeddings.position_embeddings.weight",
    "embeddings.token_type_embeddings.weight",
    "encoder.layer.0.attention.self.query.weight",
)


@dataclass(frozen=True)
class Layout:
    """What a model folder says about itself: sequence limit and the encoder's shape."""

    folder: Path
    max_length: int
    hidden: int
    heads: int
    layers: int
    eps: float


def read_layout(folder: Path) -> Layout | None:
    """The layout of a mean-pooled, normalised BERT in `folder`, or None for anything else."""
    try:
        modules = json.loads((folder / "modules.json").read_text())
        stages = tuple(m["type"] for m in sorted(modules, key=lambda m: m["idx"]))
        pooling = json.loads((folder / modules[1]["path"] / "config.json").read_text())
        config = json.loads((folder / "config.json").read_text())
        limits = json.loads((folder / "sentence_bert_config.json").read_text())
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return None
    means = pooling.get("pooling_mode_mean_tokens") and not any(
        pooling.get(k)
        for k in (
            "pooling_mode_cls_token",
            "pooling_mode_max_tokens",
            "pooling_mode_mean_sqrt_len_tokens",
        )
    )
    plain_bert = (
        config.get("model_type") == "bert"
        and config.get("hidden_act") == "gelu"
        and config.get("position_embedding_type", "absolute") == "absolute"
    )
    if stages != STAGES or not means or not plain_bert or not (folder / "tokenizer.json").is_file():
        return None
    return Layout(
        folder=folder,
        max_length=int(limits["max_seq_length"]),
        hidden=int(config["hidden_size"]),
        heads=int(config["num_attention_heads"]),
        layers=int(config["num_hidden_layers"]),
        eps=float(config["layer_norm_eps"]),
    )


def load_tokenizer(folder: Path, max_length: int | None = None) -> Any:
    """The model's fast tokenizer; with `max_length`, batches are truncated to it and padded to
    their longest row, else nothing is truncated or padded (token accounting)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    if max_length is None:
        tokenizer.no_truncation()
        tokenizer.no_padding()
    else:
        tokenizer.enable_truncation(max_length)
        pad_id = tokenizer.token_to_id("[PAD]")
        tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tokenizer


class MiniLM:
    """Tokenizer + BERT encoder + mean pooling + normalisation, in inference mode."""

    #: the encoder as an ONNX Runtime session (`service.onnx_encoder`); None: torch runs it
    onnx: Any = None

    def __init__(self, layout: Layout) -> None:
        from safetensors.torch import load_file

        self.layout = layout
        self.tokenizer = load_tokenizer(layout.folder, layout.max_length)
        weights = load_file(str(layout.folder / "model.safetensors"))
        # Some exports keep BertForX's "bert." prefix on the encoder's weights.
        self.weights = {k.removeprefix("bert."): v for k, v in weights.items()}
        missing = [k for k in _REQUIRED if k not in self.weights]
        if missing:
            raise ValueError(f"{layout.folder}: not a BERT encoder (no {missing[0]})")

    def with_onnx(self, session: Any) -> MiniLM:
        """This pipeline (the same weights and tokenizer, not a copy) with its encoder run by
        `session`, whose `hidden(ids, mask)` returns what `_encoder` does."""
        twin = copy.copy(self)
        twin.onnx = session
        return twin

    def tokenize(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(input ids, attention mask) of `texts`, int64, truncated and padded to the longest."""
        rows = self.tokenizer.encode_batch(texts)
        ids = np.array([r.ids for r in rows], dtype=np.int64)
        mask = np.array([r.attention_mask for r in rows], dtype=np.int64)
        return ids, mask

    def encode(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 embeddings of `texts`, one row each."""
        ids, mask = self.tokenize(texts)
        if self.onnx is not None:
            return _mean_normalised(self.onnx.hidden(ids, mask), mask)
        import torch

        with torch.inference_mode():
            rows = torch.from_numpy(mask)
            hidden = self._encoder(torch.from_numpy(ids), rows)
            weights = rows.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
            unit = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return unit.numpy().astype(np.float32, copy=False)

    def _encoder(self, ids: Any, mask: Any) -> Any:
        """BERT's last hidden state (token type 0 throughout, absolute positions)."""
        import torch
        from torch.nn import functional

        w, size, eps = self.weights, self.layout.hidden, self.layout.eps
        positions = torch.arange(ids.shape[1])
        x = (
            functional.embedding(ids, w["embeddings.word_embeddings.weight"])
            + w["embeddings.position_embeddings.weight"][positions]
            + w["embeddings.token_type_embeddings.weight"][0]
        )
        x = self._norm(x, "embeddings.LayerNorm", size, eps)
        keep = mask.bool()[:, None, None, :]  # padding is never attended to
        for n in range(self.layout.layers):
            x = self._layer(x, keep, f"encoder.layer.{n}.")
        return x

    def _layer(self, x: Any, keep: Any, p: str) -> Any:
        from torch.nn import functional

        size, eps = self.layout.hidden, self.layout.eps
        batch, length, _ = x.shape
        heads = self.layout.heads

        def split(name: str) -> Any:
            projected = self._linear(x, f"{p}attention.self.{name}")
            return projected.view(batch, length, heads, size // heads).transpose(1, 2)

        attended = functional.scaled_dot_product_attention(
            split("query"), split("key"), split("value"), attn_mask=keep
        )
        attended = attended.transpose(1, 2).reshape(batch, length, size)
        x = self._norm(
            self._linear(attended, f"{p}attention.output.dense") + x,
            f"{p}attention.output.LayerNorm",
            size,
            eps,
        )
        inner = functional.gelu(self._linear(x, f"{p}intermediate.dense"))
        return self._norm(self._linear(inner, f"{p}output.dense") + x, f"{p}output.LayerNorm",
                          size, eps)  # fmt: skip

    def _linear(self, x: Any, name: str) -> Any:
        from torch.nn import functional

        return functional.linear(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"])

    def _norm(self, x: Any, name: str, size: int, eps: float) -> Any:
        from torch.nn import functional

        w = self.weights
        return functional.layer_norm(x, (size,), w[f"{name}.weight"], w[f"{name}.bias"], eps)


def _mean_normalised(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """`encode`'s pooling and normalisation in numpy, for hidden states from ONNX Runtime."""
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    # As torch's normalize: divide by max(norm, 1e-12).
    norm = np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
    return (pooled / norm).astype(np.float32, copy=False)
