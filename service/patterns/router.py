"""The hybrid decision router: regex fast path, then a learned route decision, else the LLM.

Modes:
- `fast`: regex triggers of infrastructure patterns only; never embeds the query.
- `balanced`: a trigger that matches the whole query (an exact form such as "system status"
  or "remember that X") decides at once, without embedding. Any other query is embedded
  (MiniLM) and a linear softmax over the embedding and the query's words (`route_model`,
  trained offline on labelled phrasing families) picks the route; below the route's calibrated
  threshold the query goes to the LLM. Within the route, a trigger that fired somewhere in the
  query picks the pattern (and its captured groups), else the pattern whose exemplars are most
  similar to the query. A trigger firing inside a longer query only suggests: "is the database
  healthy and what did we note last time" contains an infrastructure form but is hybrid, and
  measured on the design families, letting such partial hits decide cost two points.
- `thorough`: like balanced with lower thresholds; a query that is both a memory and an
  infrastructure question widens to the best-fitting hybrid pattern.
A pattern demoted by its statistics sends the query to the LLM.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from service.patterns.registry import Pattern, PatternRegistry
from service.patterns.route_model import DEFAULT_MODEL_PATH, RouteModel
from service.patterns.stats import PatternStats

Mode = Literal["fast", "balanced", "thorough"]
MODES: tuple[str, ...] = ("fast", "balanced", "thorough")
#: `threshold=None` means: use the per-route thresholds calibrated into the model file.
DEFAULT_THRESHOLD: float | None = None
#: thorough mode lowers every threshold by this much.
DEFAULT_THOROUGH_DROP = 0.15
#: Confidence of a regex hit: a trigger is a hand-written, exact statement of intent.
REGEX_CONFIDENCE = 0.95
#: thorough: a query widens to hybrid when memory and infrastructure both get this probability.
WIDEN_MIN = 0.25
#: Triggers see at most this many characters: routine queries are short, and a cap bounds the
#: polynomial cost of `.*` in triggers on a hostile 4000-character query.
MAX_REGEX_INPUT = 400
PATTERN_ROUTES: tuple[str, ...] = ("infrastructure", "memory", "hybrid")


class EmbedderLike(Protocol):
    async def embed(self, text: str) -> np.ndarray: ...

    async def embed_many(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class RouteDecision:
    route: str  # infrastructure | memory | hybrid | llm
    pattern_name: str | None
    pattern_type: str | None
    confidence: float
    matched_by: str  # regex | model | none
    mode: str = "balanced"
    groups: dict[str, str] = field(default_factory=dict)
    #: the best pattern when the route is llm (below threshold or demoted), for diagnostics
    candidate: str | None = None
    demoted: bool = False
    widened: bool = False
    #: the model's route probabilities when the query was embedded (None on the regex path)
    probabilities: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Index:
    """Exemplar embeddings of one registry version, computed in one batch."""

    version: int
    patterns: tuple[Pattern, ...]
    matrix: np.ndarray  # (n_exemplars, 384), L2-normalised
    owners: np.ndarray  # (n_exemplars,) index into patterns


class HybridRouter:
    """Routes a query to a pattern (or the LLM) for one registry; rebuilt on reload."""

    def __init__(
        self,
        registry: PatternRegistry,
        embedder: EmbedderLike,
        index: _Index,
        model: RouteModel,
        *,
        stats: PatternStats | None = None,
        threshold: float | None = DEFAULT_THRESHOLD,
        thorough_threshold: float | None = None,
    ) -> None:
        self.registry = registry
        self.embedder = embedder
        self.model = model
        self.stats = stats
        self.thresholds = _thresholds(model, threshold, 0.0)
        self.thorough_thresholds = (
            _thresholds(model, threshold, DEFAULT_THOROUGH_DROP)
            if thorough_threshold is None
            else dict.fromkeys(model.classes, thorough_threshold)
        )
        self._index = index
        #: queries this router asked the embedder for (its LRU answers repeats: see embedding.py)
        self.embed_calls = 0

    @classmethod
    async def build(
        cls,
        registry: PatternRegistry,
        embedder: EmbedderLike,
        *,
        stats: PatternStats | None = None,
        threshold: float | None = DEFAULT_THRESHOLD,
        thorough_threshold: float | None = None,
        model: RouteModel | str | Path | None = None,
    ) -> HybridRouter:
        """Load the route model, embed every exemplar in one batch, return a ready router."""
        if not isinstance(model, RouteModel):
            model = RouteModel.load(model or DEFAULT_MODEL_PATH)
        index = await build_index(registry, embedder)
        return cls(
            registry,
            embedder,
            index,
            model,
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
        hits = regex_hits(query, allowed)
        if mode == "fast":
            if not hits:
                return RouteDecision("llm", None, None, 0.0, "none", mode)
            # No embedding in fast mode: among several hits the longest match is most specific.
            best = max(hits, key=lambda h: h.length)
            return self._decide(best.pattern, REGEX_CONFIDENCE, "regex", mode, best.groups)
        # A hybrid trigger fires on a combination of cues, so it is the most specific hit.
        hits = [h for h in hits if h.pattern.type == "hybrid"] or hits
        exact = [h for h in hits if h.exact]
        if len(exact) == 1:
            return self._decide(exact[0].pattern, REGEX_CONFIDENCE, "regex", mode, exact[0].groups)
        vector = await self._embed(query)
        probs = self.model.probabilities(vector, query)
        named = {c: round(float(p), 4) for c, p in zip(self.model.classes, probs, strict=True)}
        return self._model_decision(vector, named, index, mode, hits)

    async def _embed(self, query: str) -> np.ndarray:
        # No cache of its own: the embedder's LRU is shared with `recall_memory`, so a balanced
        # memory request encodes its query once for routing and recall together.
        self.embed_calls += 1
        return np.asarray(await self.embedder.embed(query), dtype=np.float32)

    def _model_decision(
        self,
        vector: np.ndarray,
        probs: dict[str, float],
        index: _Index,
        mode: str,
        hits: Sequence[RegexHit] = (),
    ) -> RouteDecision:
        thresholds = self.thorough_thresholds if mode == "thorough" else self.thresholds
        route, widened = choose_route(probs, thresholds, widen=mode == "thorough")
        # Widened: the query is as much memory as infrastructure, which together make hybrid.
        confidence = probs["memory"] + probs["infrastructure"] if widened else probs[route]
        agreeing = [h for h in hits if h.pattern.type == route]
        if agreeing:
            # A trigger of the chosen route fired: its pattern and captured groups are exact.
            best_hit = max(agreeing, key=lambda h: h.length)
            decision = self._decide(
                best_hit.pattern, confidence, "regex", mode, best_hit.groups, probs
            )
            return _replace(decision, widened=widened) if decision.route != "llm" else decision
        similarity = _pattern_similarity(vector, index)
        ranked = sorted(PATTERN_ROUTES, key=lambda r: probs[r], reverse=True)
        best = _best_pattern(index.patterns, similarity, ranked[0])
        if route == "llm":
            return RouteDecision(
                "llm",
                None,
                None,
                round(max(probs[r] for r in PATTERN_ROUTES), 4),
                "none",
                mode,
                candidate=best.name if best else None,
                probabilities=probs,
            )
        pattern = _best_pattern(index.patterns, similarity, route)
        if pattern is None:
            # This catalogue has no pattern of the chosen route: only the model can answer.
            return RouteDecision("llm", None, None, probs[route], "none", mode, probabilities=probs)
        decision = self._decide(pattern, confidence, "model", mode, {}, probs)
        return _replace(decision, widened=widened) if decision.route != "llm" else decision

    def _decide(
        self,
        pattern: Pattern,
        confidence: float,
        matched_by: str,
        mode: str,
        groups: dict[str, str],
        probs: dict[str, float] | None = None,
    ) -> RouteDecision:
        factor = self._factor(pattern)
        adjusted = round(confidence * factor, 4)
        thresholds = self.thorough_thresholds if mode == "thorough" else self.thresholds
        if factor < 1.0 or adjusted < thresholds[pattern.type]:
            return RouteDecision(
                "llm",
                None,
                None,
                adjusted,
                "none",
                mode,
                candidate=pattern.name,
                demoted=factor < 1.0,
                probabilities=probs,
            )
        return RouteDecision(
            pattern.type,
            pattern.name,
            pattern.type,
            adjusted,
            matched_by,
            mode,
            groups,
            probabilities=probs,
        )

    def _factor(self, pattern: Pattern) -> float:
        return self.stats.confidence_factor(pattern.name) if self.stats is not None else 1.0


def choose_route(
    probs: dict[str, float], thresholds: dict[str, float], *, widen: bool = False
) -> tuple[str, bool]:
    """The route of the highest probability, or `llm` when that is below its threshold.

    Shared with scripts/train_router.py, so the cross-validated figure is this exact rule.
    With `widen`, a query that is both memory and infrastructure (each >= WIDEN_MIN) is hybrid.
    """
    if widen and min(probs["memory"], probs["infrastructure"]) >= WIDEN_MIN:
        return "hybrid", True
    route = max(probs, key=lambda r: probs[r])
    if route != "llm" and probs[route] < thresholds[route]:
        return "llm", False
    return route, False


async def build_index(registry: PatternRegistry, embedder: EmbedderLike) -> _Index:
    """One batched encode of every exemplar of the registry's enabled patterns."""
    patterns = registry.patterns
    texts = [text for p in patterns for text in p.exemplars]
    owners = np.array([i for i, p in enumerate(patterns) for _ in p.exemplars], dtype=np.int64)
    if texts:
        matrix = np.asarray(await embedder.embed_many(texts), dtype=np.float32)
    else:
        matrix = np.zeros((0, 384), dtype=np.float32)
    return _Index(registry.version, patterns, matrix, owners)


@dataclass(frozen=True)
class RegexHit:
    pattern: Pattern
    groups: dict[str, str]
    length: int
    #: the match covers the whole query (bar closing punctuation): an exact form
    exact: bool


def regex_hits(query: str, patterns: Sequence[Pattern]) -> list[RegexHit]:
    """Every pattern with a firing trigger, with its longest match."""
    text = query.strip()[:MAX_REGEX_INPUT]
    core = len(text.rstrip("?.!,;: \t"))
    hits = []
    for pattern in patterns:
        best: re.Match[str] | None = None
        for trigger in pattern.triggers:
            match = trigger.search(text)
            if match and (best is None or len(match.group(0)) > len(best.group(0))):
                best = match
        if best is not None:
            groups = {k: v.strip() for k, v in best.groupdict().items() if v and v.strip()}
            exact = best.start() == 0 and best.end() >= core
            hits.append(RegexHit(pattern, groups, len(best.group(0)), exact))
    return hits


def _thresholds(model: RouteModel, override: float | None, drop: float) -> dict[str, float]:
    base = dict(model.thresholds) if override is None else dict.fromkeys(model.classes, override)
    return {route: max(0.0, value - drop) for route, value in base.items()}


def _pattern_similarity(vector: np.ndarray, index: _Index) -> np.ndarray:
    """Best exemplar similarity per pattern (-1 for a pattern without exemplars)."""
    scores = np.full(len(index.patterns), -1.0, dtype=np.float32)
    if len(index.matrix):
        np.maximum.at(scores, index.owners, index.matrix @ vector)
    return scores


def _best_pattern(
    patterns: Sequence[Pattern], similarity: np.ndarray, route: str
) -> Pattern | None:
    candidates = [(float(s), i) for i, (p, s) in enumerate(zip(patterns, similarity, strict=True))]
    candidates = [(s, i) for s, i in candidates if patterns[i].type == route and s > -1.0]
    if not candidates:
        return None
    return patterns[max(candidates)[1]]


def _replace(decision: RouteDecision, **changes: Any) -> RouteDecision:
    return RouteDecision(**{**asdict(decision), **changes})
