"""The learned route decision: a linear softmax over the query's MiniLM embedding plus words.

Features are the 384-d MiniLM embedding (meaning, robust to vocabulary) concatenated with hashed
word unigrams and bigrams of the query (the cue words an embedding blurs: "my notes", "is ... up",
"explain", "remember that"). Measured on leave-one-family-out splits, the words add several points
over the embedding alone (scripts/train_router.py prints both).

Trained offline by `scripts/train_router.py` on labelled phrasing families and committed as a
small `.npz` (weights, bias, per-route thresholds, and the training report as JSON). Inference is
one (4 x d) matrix-vector product plus hashing a few words: well under a millisecond, numpy only.
The fitting code lives here too so the training script and the tests share one implementation.
"""

from __future__ import annotations

import itertools
import json
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROUTES: tuple[str, ...] = ("infrastructure", "memory", "hybrid", "llm")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL_PATH = PROJECT_ROOT / "configs" / "router_model.npz"
EMBEDDING_DIM = 384
FORMAT_VERSION = 1
_WORD = re.compile(r"[a-z0-9_]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class LexicalConfig:
    """Hashed bag of words: `dim` buckets (0 = no lexical part), L2-normalised, times `weight`."""

    dim: int = 4096
    weight: float = 3.0
    bigrams: bool = True

    def vector(self, text: str) -> np.ndarray:
        out = np.zeros(self.dim, dtype=np.float32)
        if not self.dim:
            return out
        words = _WORD.findall(text.lower())
        grams = [f"w:{w}" for w in words]
        if self.bigrams:
            # Sentence edges count as words: "^ remember" and "up $" are strong cues.
            edged = ["^", *words, "$"]
            grams += [f"b:{a} {b}" for a, b in itertools.pairwise(edged)]
        for gram in grams:
            # crc32, not hash(): Python salts str hashes per process.
            out[zlib.crc32(gram.encode()) % self.dim] += 1.0
        norm = float(np.linalg.norm(out))
        return out * (self.weight / norm) if norm else out


class RouteModelError(ValueError):
    """The model file is missing, unreadable or of another format."""


@dataclass(frozen=True)
class RouteModel:
    """Softmax(W @ features + b) over `classes`; `thresholds[route]` gate the LLM fallback."""

    classes: tuple[str, ...]
    weights: np.ndarray  # (n_classes, 384 + lexical.dim) float32
    bias: np.ndarray  # (n_classes,) float32
    #: the embedding part is multiplied by this (puts it on the lexical part's footing)
    scale: float
    #: a pattern route wins only with at least this probability, else the query goes to the LLM
    thresholds: dict[str, float]
    lexical: LexicalConfig = field(default_factory=LexicalConfig)
    meta: dict[str, Any] = field(default_factory=dict)

    def probabilities(self, embedding: np.ndarray, text: str) -> np.ndarray:
        """Class probabilities of one query, given its (normalised) embedding."""
        return softmax(self.weights @ self.features(embedding, text) + self.bias)

    def features(self, embedding: np.ndarray, text: str) -> np.ndarray:
        vec = np.asarray(embedding, dtype=np.float32) * self.scale
        return np.concatenate([vec, self.lexical.vector(text)])

    def index(self, route: str) -> int:
        return self.classes.index(route)

    def save(self, path: Path) -> None:
        np.savez_compressed(
            path,
            format_version=np.array(FORMAT_VERSION),
            classes=np.array(self.classes),
            weights=self.weights.astype(np.float32),
            bias=self.bias.astype(np.float32),
            scale=np.array(self.scale, dtype=np.float32),
            thresholds=np.array([self.thresholds[c] for c in self.classes], dtype=np.float32),
            lexical=np.array(
                [self.lexical.dim, self.lexical.weight, float(self.lexical.bigrams)],
                dtype=np.float32,
            ),
            meta=np.array(json.dumps(self.meta, sort_keys=True)),
        )

    @classmethod
    def load(cls, path: str | Path = DEFAULT_MODEL_PATH) -> RouteModel:
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as data:
                version = int(data["format_version"])
                if version != FORMAT_VERSION:
                    raise RouteModelError(
                        f"{path}: router model format {version}, expected {FORMAT_VERSION}; "
                        "retrain with scripts/train_router.py"
                    )
                classes = tuple(str(c) for c in data["classes"])
                weights = np.asarray(data["weights"], dtype=np.float32)
                bias = np.asarray(data["bias"], dtype=np.float32)
                scale = float(data["scale"])
                thresholds = dict(zip(classes, (float(t) for t in data["thresholds"]), strict=True))
                dim, weight, bigrams = (float(v) for v in data["lexical"])
                lexical = LexicalConfig(int(dim), weight, bool(bigrams))
                meta = json.loads(str(data["meta"]))
        except FileNotFoundError:
            raise RouteModelError(
                f"{path}: router model not found; train it with scripts/train_router.py"
            ) from None
        except (OSError, KeyError, ValueError) as exc:
            if isinstance(exc, RouteModelError):
                raise
            raise RouteModelError(f"{path}: not a router model: {exc}") from exc
        if set(classes) != set(ROUTES):
            raise RouteModelError(f"{path}: classes {classes} do not match routes {ROUTES}")
        if weights.shape != (len(classes), EMBEDDING_DIM + lexical.dim):
            raise RouteModelError(f"{path}: weights of shape {weights.shape} do not fit")
        return cls(classes, weights, bias, scale, thresholds, lexical, meta)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / np.sum(exp, axis=-1, keepdims=True)


def fit_softmax(
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    *,
    l2: float,
    sample_weight: np.ndarray | None = None,
    steps: int = 600,
    learning_rate: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression by full-batch Adam; returns (weights, bias).

    `sample_weight` lets every family (or class) count equally however many rows it has. The
    problem is convex and small (a few thousand x 384), so a fixed step count converges.
    """
    x = np.asarray(x, dtype=np.float64)
    n, dim = x.shape
    onehot = np.zeros((n, n_classes))
    onehot[np.arange(n), y] = 1.0
    weight = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    weight = weight / weight.sum()
    w = np.zeros((n_classes, dim))
    b = np.zeros(n_classes)
    moments = [np.zeros_like(w), np.zeros_like(w), np.zeros_like(b), np.zeros_like(b)]
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, steps + 1):
        probs = softmax(x @ w.T + b)
        delta = (probs - onehot) * weight[:, None]
        grad_w = delta.T @ x + 2 * l2 * w
        grad_b = delta.sum(axis=0)
        for i, (param, grad) in enumerate(((w, grad_w), (b, grad_b))):
            m, v = moments[2 * i], moments[2 * i + 1]
            m *= beta1
            m += (1 - beta1) * grad
            v *= beta2
            v += (1 - beta2) * grad * grad
            m_hat = m / (1 - beta1**step)
            v_hat = v / (1 - beta2**step)
            param -= learning_rate * m_hat / (np.sqrt(v_hat) + eps)
    return w.astype(np.float32), b.astype(np.float32)


def balanced_weights(labels: Sequence[int], groups: Sequence[str]) -> np.ndarray:
    """Per-row weights so every (group, class) cell and every class carry comparable mass.

    Families differ in size (a 14-line family vs a 143-line legacy set): without this the
    biggest author style would dominate the decision boundary.
    """
    labels = np.asarray(labels)
    groups_arr = np.asarray(groups)
    weights = np.ones(len(labels), dtype=np.float64)
    for g in np.unique(groups_arr):
        in_group = groups_arr == g
        weights[in_group] = 1.0 / np.sqrt(in_group.sum())
    for c in np.unique(labels):
        in_class = labels == c
        weights[in_class] /= weights[in_class].sum()
    return weights / weights.mean()
