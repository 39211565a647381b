"""The pattern registry: `configs/patterns.yaml` validated into typed, immutable `Pattern`s.

Every validation error names the offending field the way a reader would find it in the file,
e.g. `patterns[3].triggers[0]: invalid regex: ...`. A reload that fails keeps the old patterns.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from pydantic_core import PydanticCustomError

from service.patterns.catalogue import (
    PATTERN_TYPES,
    TEMPLATE_FIELDS,
    CatalogueSpec,
    DefaultsSpec,
    PatternConfigError,
    PatternSpec,
    PatternType,
    check_template,
    config_error,
)

__all__ = [
    "PATTERN_TYPES",
    "Catalogue",
    "MemoryOp",
    "Pattern",
    "PatternConfigError",
    "PatternRegistry",
    "PatternType",
    "ToolCall",
    "load_catalogue",
    "parse_catalogue",
]

#: The plan's token budgets per pattern type (integration test plan, 5.3).
PLAN_TOKEN_BUDGETS: dict[str, int] = {"infrastructure": 30, "memory": 80, "hybrid": 150}
#: The plan's ceiling for any pattern's execution time (integration test plan, 6.2).
TIMEOUT_CEILING_S = 5.0
DEFAULT_TIMEOUTS_S: dict[str, float] = {"infrastructure": 1.0, "memory": 2.0, "hybrid": 3.0}
DEFAULT_CACHE_TTL_S: dict[str, float] = {"infrastructure": 30.0, "memory": 120.0, "hybrid": 60.0}
DEFAULT_TEMPLATE = "Q: {query}\nData: {result}\nAnswer briefly."


@dataclass(frozen=True)
class ToolCall:
    """One registered tool with its static or derived (`{query}`, `{group}`) arguments."""

    tool: str
    arguments: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MemoryOp:
    """A pgvector memory operation: recall top-k for `query`, or store `content`.

    `tags` filter a recall (or label a store); a tag may be a template such as "{tag}".
    """

    action: Literal["recall", "store"]
    query: str = "{query}"
    content: str = "{text}"
    limit: int = 3
    min_similarity: float = 0.0
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Pattern:
    name: str
    type: PatternType
    description: str
    triggers: tuple[re.Pattern[str], ...]
    exemplars: tuple[str, ...]
    token_budget: int
    timeout_s: float
    cache_ttl_s: float
    template: str
    #: infrastructure: exactly one call; hybrid: one or more calls beside the memory part
    calls: tuple[ToolCall, ...] = ()
    memory: MemoryOp | None = None
    #: hybrid only: fail the whole pattern when any part fails (else report partial success)
    require_all: bool = False
    test_only: bool = False
    #: "global": the answer is the same for every agent (live server facts), so all namespaces
    #: share one cache entry; "namespace": the answer depends on the caller's rows.
    cache_scope: Literal["namespace", "global"] = "namespace"

    @property
    def cacheable(self) -> bool:
        """Stores change state, so only reads are cached."""
        return self.cache_ttl_s > 0 and not (self.memory and self.memory.action == "store")


class PatternRegistry:
    """The loaded catalogue plus a version that every reload bumps."""

    def __init__(
        self,
        patterns: tuple[Pattern, ...],
        *,
        llm_exemplars: tuple[str, ...] = (),
        path: Path | None = None,
        version: int = 1,
        include_test: bool = False,
    ) -> None:
        self._all = patterns
        self.llm_exemplars = llm_exemplars
        self.path = path
        self.version = version
        self.include_test = include_test

    @classmethod
    def load(cls, path: str | Path, *, include_test: bool = False) -> PatternRegistry:
        """Read and validate a catalogue file; test-only patterns stay off unless asked for."""
        path = Path(path)
        catalogue = load_catalogue(path)
        return cls(
            catalogue.patterns,
            llm_exemplars=catalogue.llm_exemplars,
            path=path,
            include_test=include_test,
        )

    def reload(self, path: str | Path | None = None) -> int:
        """Re-read the catalogue (same path by default) and bump the version; invalid keeps old."""
        target = Path(path) if path is not None else self.path
        if target is None:
            raise PatternConfigError("path", "registry was not loaded from a file")
        catalogue = load_catalogue(target)
        self._all, self.llm_exemplars = catalogue.patterns, catalogue.llm_exemplars
        self.path = target
        self.version += 1
        return self.version

    @property
    def patterns(self) -> tuple[Pattern, ...]:
        """Patterns the router may choose (test-only ones only when enabled)."""
        return tuple(p for p in self._all if self.include_test or not p.test_only)

    def all_patterns(self) -> tuple[Pattern, ...]:
        return self._all

    def get(self, name: str) -> Pattern:
        for pattern in self.patterns:
            if pattern.name == name:
                return pattern
        raise KeyError(name)

    def tool_names(self) -> set[str]:
        """Every tool the enabled patterns call (memory parts excluded)."""
        return {call.tool for p in self.patterns for call in p.calls}

    def __iter__(self) -> Iterator[Pattern]:
        return iter(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)


@dataclass(frozen=True)
class Catalogue:
    patterns: tuple[Pattern, ...]
    #: utterances that must go to the LLM: the router's "none of the patterns" class
    llm_exemplars: tuple[str, ...] = ()


def load_catalogue(path: Path) -> Catalogue:
    """Parse and validate one YAML catalogue file."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PatternConfigError(str(path), f"cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise PatternConfigError(str(path), f"invalid YAML: {exc}") from exc
    return parse_catalogue(data)


def parse_catalogue(data: Any) -> Catalogue:
    """Validate an already-parsed catalogue mapping into patterns."""
    try:
        spec = CatalogueSpec.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc) from None
    by_type = spec.defaults
    defaults = {"infrastructure": by_type.infrastructure, "memory": by_type.memory}
    defaults["hybrid"] = by_type.hybrid
    patterns = tuple(
        _pattern(p, f"patterns[{i}]", defaults[p.type]) for i, p in enumerate(spec.patterns)
    )
    return Catalogue(patterns, tuple(spec.llm_exemplars))


def _pattern(spec: PatternSpec, where: str, defaults: DefaultsSpec) -> Pattern:
    """A validated pattern with its type's defaults filled in and range-checked."""
    kind = spec.type
    budget = _first(spec.token_budget, defaults.token_budget, PLAN_TOKEN_BUDGETS[kind])
    if budget < 1:
        raise PatternConfigError(f"{where}.token_budget", f"must be >= 1, got {budget}")
    timeout = float(_first(spec.timeout_s, defaults.timeout_s, DEFAULT_TIMEOUTS_S[kind]))
    if not 0 < timeout <= TIMEOUT_CEILING_S:
        raise PatternConfigError(
            f"{where}.timeout_s", f"must be in (0, {TIMEOUT_CEILING_S}], got {timeout}"
        )
    ttl = float(_first(spec.cache_ttl_s, defaults.cache_ttl_s, DEFAULT_CACHE_TTL_S[kind]))
    if ttl < 0:
        raise PatternConfigError(f"{where}.cache_ttl_s", f"must be >= 0, got {ttl}")
    template = _first(spec.template, defaults.template, DEFAULT_TEMPLATE)
    try:
        check_template(template, TEMPLATE_FIELDS, "template", require="result")
    except PydanticCustomError as exc:
        raise PatternConfigError(f"{where}.template", (exc.context or {})["message"]) from None
    memory = None
    if spec.memory is not None:
        m = spec.memory
        memory = MemoryOp(
            action=m.action,
            query=m.query,
            content=m.content,
            limit=m.limit,
            min_similarity=float(m.min_similarity),
            tags=tuple(m.tags),
        )
    return Pattern(
        name=spec.name,
        type=kind,
        description=spec.description.strip(),
        triggers=spec.compiled_triggers(),
        exemplars=tuple(spec.exemplars),
        token_budget=budget,
        timeout_s=timeout,
        cache_ttl_s=ttl,
        template=template,
        calls=tuple(ToolCall(c.tool, dict(c.arguments)) for c in spec.calls()),
        memory=memory,
        require_all=spec.require_all,
        test_only=spec.test_only,
        cache_scope="global" if spec.cache_scope == "global" else "namespace",
    )


def _first(*values: Any) -> Any:
    """The first value that is set: the pattern's own, its type's default, the built-in one."""
    return next(v for v in values if v is not None)
