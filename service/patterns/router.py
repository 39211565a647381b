"""The hybrid decision router: regex fast path, then MiniLM semantic match, else the LLM.

Modes:
- `fast`: regex triggers of infrastructure patterns only; never embeds the query.
- `balanced`: regex triggers of every type, then cosine similarity of the query to every
  pattern's exemplars; below `threshold` the query goes to the LLM.
- `thorough`: like balanced with a lower threshold; when a memory and an infrastructure
  pattern both fit about equally, the query widens to the best-fitting hybrid pattern.
A pattern demoted by its statistics has its confidence scaled down, which sends it to the LLM.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from service.patterns.registry import Pattern, PatternRegistry
from service.patterns.stats import PatternStats

Mode = Literal["fast", "balanced", "thorough"]
MODES: tuple[str, ...] = ("fast", "balanced", "thorough")
#: Tuned on the development split of configs/eval/routing_eval.jsonl (see README).
DEFAULT_THRESHOLD = 0.5
DEFAULT_THOROUGH_DROP = 0.08
#: Confidence of a regex hit: a trigger is a hand-written, exact statement of intent.
REGEX_CONFIDENCE = 0.95
#: thorough mode: memory and infrastructure scores this close count as "both".
WIDEN_MARGIN = 0.06
#: Triggers see at most this many characters: routine queries are short, and a cap bounds the
#: polynomial cost of `.*` in triggers on a hostile 4000-character query.
MAX_REGEX_INPUT = 400


class EmbedderLike(Protocol):
    async def embed(self, text: str) -> np.ndarray: ...

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class RouteDecision:
    route: str  # infrastructure | memory | hybrid | llm
    pattern_name: str | None
    pattern_type: str | None
    confidence: float
    matched_by: str  # regex | semantic | none
    mode: str = "balanced"
    groups: dict[str, str] = field(default_factory=dict)
    #: the best pattern when the route is llm (below threshold or demoted), for diagnostics
    candidate: str | None = None
    demoted: bool = False
    widened: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Index:
    """Exemplar embeddings of one registry version, computed in one batch."""

    version: int
    patterns: tuple[Pattern, ...]
    matrix: np.ndarray  # (n_exemplars, 384), L2-normalised
    owners: np.ndarray  # (n_exemplars,) index into patterns
    llm_matrix: np.ndarray  # (n_llm_exemplars, 384): the "no pattern fits" class


class HybridRouter:
    """Routes a query to a pattern (or the LLM) for one registry; rebuilt on reload."""

    def __init__(
        self,
        registry: PatternRegistry,
        embedder: EmbedderLike,
        index: _Index,
        *,
        stats: PatternStats | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        thorough_threshold: float | None = None,
    ) -> None:
        self.registry = registry
        self.embedder = embedder
        self.stats = stats
        self.threshold = threshold
        self.thorough_threshold = (
            threshold - DEFAULT_THOROUGH_DROP if thorough_threshold is None else thorough_threshold
        )
        self._index = index
        self.embed_calls = 0

    @classmethod
    async def build(
        cls,
        registry: PatternRegistry,
        embedder: EmbedderLike,
        *,
        stats: PatternStats | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        thorough_threshold: float | None = None,
    ) -> HybridRouter:
        """Embed every exemplar of the registry in one batch and return a ready router."""
        index = await build_index(registry, embedder)
        return cls(
            registry,
            embedder,
            index,
            stats=stats,
            threshold=threshold,
            thorough_threshold=thorough_threshold,
        )

    @property
    def version(self) -> int:
        return self._index.version

    async def refresh(self) -> None:
        """Re-embed exemplars after the registry was reloaded (no-op if already current)."""
        if self._index.version != self.registry.version:
            self._index = await build_index(self.registry, self.embedder)

    async def route(self, query: str, mode: str = "balanced") -> RouteDecision:
        """Decide where `query` goes under `mode`."""
        if mode not in MODES:
            raise ValueError(f"unknown execution mode {mode!r}")
        index = self._index
        allowed = [p for p in index.patterns if mode != "fast" or p.type == "infrastructure"]
        hits = _regex_hits(query, allowed)
        if mode == "fast":
            if not hits:
                return RouteDecision("llm", None, None, 0.0, "none", mode)
            # No embedding in fast mode: among several hits the longest match is most specific.
            pattern, groups, _ = max(hits, key=lambda h: h[2])
            return self._decide(pattern, REGEX_CONFIDENCE, "regex", mode, groups)
        # A hybrid trigger fires on a combination of cues, so it is the most specific hit.
        hits = [h for h in hits if h[0].type == "hybrid"] or hits
        if len(hits) == 1:
            pattern, groups, _ = hits[0]
            return self._decide(pattern, REGEX_CONFIDENCE, "regex", mode, groups)
        scores, llm_score = await self._semantic_scores(query, index)
        if hits:
            # Several triggers fired: let the meaning of the query break the tie.
            pattern, groups, _ = max(hits, key=lambda h: scores[index.patterns.index(h[0])])
            return self._decide(pattern, REGEX_CONFIDENCE, "regex", mode, groups)
        return self._semantic_decision(scores, llm_score, index, mode)

    async def _semantic_scores(self, query: str, index: _Index) -> tuple[np.ndarray, float]:
        """Best exemplar similarity per pattern, and to the LLM class."""
        self.embed_calls += 1
        vector = np.asarray(await self.embedder.embed(query), dtype=np.float32)
        sims = index.matrix @ vector
        scores = np.full(len(index.patterns), -1.0, dtype=np.float32)
        np.maximum.at(scores, index.owners, sims)
        llm_score = float(np.max(index.llm_matrix @ vector)) if len(index.llm_matrix) else -1.0
        return scores, llm_score

    def _semantic_decision(
        self, scores: np.ndarray, llm_score: float, index: _Index, mode: str
    ) -> RouteDecision:
        threshold = self.thorough_threshold if mode == "thorough" else self.threshold
        adjusted = np.array(
            [s * self._factor(p) for p, s in zip(index.patterns, scores, strict=True)],
            dtype=np.float32,
        )
        if not len(adjusted):
            return RouteDecision("llm", None, None, 0.0, "none", mode)
        best = int(np.argmax(adjusted))
        pattern, confidence = index.patterns[best], float(adjusted[best])
        if mode == "thorough" and llm_score <= confidence:
            widened = _widen(index.patterns, adjusted, best, threshold)
            if widened is not None:
                hybrid, conf = widened
                return RouteDecision(
                    "hybrid", hybrid.name, "hybrid", round(conf, 4), "semantic", mode, widened=True
                )
        if confidence < threshold or llm_score > confidence:
            # Below threshold, or closer to a known "needs the model" utterance than to any pattern.
            return RouteDecision(
                "llm",
                None,
                None,
                round(confidence, 4),
                "none",
                mode,
                candidate=pattern.name,
                demoted=self._factor(pattern) < 1.0 and float(scores[best]) >= threshold,
            )
        return RouteDecision(
            pattern.type, pattern.name, pattern.type, round(confidence, 4), "semantic", mode
        )

    def _decide(
        self,
        pattern: Pattern,
        confidence: float,
        matched_by: str,
        mode: str,
        groups: dict[str, str],
    ) -> RouteDecision:
        factor = self._factor(pattern)
        adjusted = round(confidence * factor, 4)
        threshold = self.thorough_threshold if mode == "thorough" else self.threshold
        if adjusted < threshold:
            return RouteDecision(
                "llm",
                None,
                None,
                adjusted,
                "none",
                mode,
                candidate=pattern.name,
                demoted=factor < 1.0,
            )
        return RouteDecision(
            pattern.type, pattern.name, pattern.type, adjusted, matched_by, mode, groups
        )

    def _factor(self, pattern: Pattern) -> float:
        return self.stats.confidence_factor(pattern.name) if self.stats is not None else 1.0


async def build_index(registry: PatternRegistry, embedder: EmbedderLike) -> _Index:
    """One batched encode of every exemplar of the registry's enabled patterns."""
    patterns = registry.patterns
    texts = [text for p in patterns for text in p.exemplars]
    owners = np.array([i for i, p in enumerate(patterns) for _ in p.exemplars], dtype=np.int64)
    llm_texts = list(registry.llm_exemplars)
    if texts or llm_texts:
        both = np.asarray(await embedder.embed_many([*texts, *llm_texts]), dtype=np.float32)
    else:
        both = np.zeros((0, 384), dtype=np.float32)
    return _Index(registry.version, patterns, both[: len(texts)], owners, both[len(texts) :])


def _regex_hits(
    query: str, patterns: Sequence[Pattern]
) -> list[tuple[Pattern, dict[str, str], int]]:
    """Every pattern with a firing trigger: (pattern, named groups, match length)."""
    text = query.strip()[:MAX_REGEX_INPUT]
    hits = []
    for pattern in patterns:
        best: re.Match[str] | None = None
        for trigger in pattern.triggers:
            match = trigger.search(text)
            if match and (best is None or len(match.group(0)) > len(best.group(0))):
                best = match
        if best is not None:
            groups = {k: v.strip() for k, v in best.groupdict().items() if v}
            hits.append((pattern, groups, len(best.group(0))))
    return hits


def _widen(
    patterns: Sequence[Pattern], scores: np.ndarray, best: int, threshold: float
) -> tuple[Pattern, float] | None:
    """thorough: a query fitting both a memory and an infrastructure pattern becomes hybrid."""
    kinds = {"memory": -1.0, "infrastructure": -1.0}
    for pattern, score in zip(patterns, scores, strict=True):
        if pattern.type in kinds:
            kinds[pattern.type] = max(kinds[pattern.type], float(score))
    both = min(kinds.values())
    if (
        patterns[best].type == "hybrid"
        or both < threshold
        or abs(kinds["memory"] - kinds["infrastructure"]) > WIDEN_MARGIN
    ):
        return None
    hybrids = [(p, float(s)) for p, s in zip(patterns, scores, strict=True) if p.type == "hybrid"]
    if not hybrids:
        return None
    hybrid, _ = max(hybrids, key=lambda h: h[1])
    return hybrid, both
