"""The pattern registry: `configs/patterns.yaml` validated into typed, immutable `Pattern`s.

Every validation error names the offending field the way a reader would find it in the file,
e.g. `patterns[3].triggers[0]: invalid regex: ...`. A reload that fails keeps the old patterns.
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from service.patterns.regex_safety import UnsafeRegex, check_regex

PatternType = Literal["infrastructure", "memory", "hybrid"]
PATTERN_TYPES: tuple[str, ...] = ("infrastructure", "memory", "hybrid")
#: The plan's token budgets per pattern type (integration test plan, 5.3).
PLAN_TOKEN_BUDGETS: dict[str, int] = {"infrastructure": 30, "memory": 80, "hybrid": 150}
#: The plan's ceiling for any pattern's execution time (integration test plan, 6.2).
TIMEOUT_CEILING_S = 5.0
DEFAULT_TIMEOUTS_S: dict[str, float] = {"infrastructure": 1.0, "memory": 2.0, "hybrid": 3.0}
DEFAULT_CACHE_TTL_S: dict[str, float] = {"infrastructure": 30.0, "memory": 120.0, "hybrid": 60.0}
DEFAULT_TEMPLATE = "Q: {query}\nData: {result}\nAnswer briefly."

_NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
_TOP_KEYS = frozenset({"version", "defaults", "patterns", "llm_exemplars"})
_DEFAULT_KEYS = frozenset({"token_budget", "timeout_s", "cache_ttl_s", "template"})
_PATTERN_KEYS = frozenset(
    {
        "name",
        "type",
        "description",
        "triggers",
        "exemplars",
        "token_budget",
        "timeout_s",
        "cache_ttl_s",
        "template",
        "tool",
        "arguments",
        "memory",
        "tools",
        "require_all",
        "test_only",
        "cache_scope",
    }
)
_MEMORY_KEYS = frozenset({"action", "query", "content", "limit", "min_similarity", "tags"})
_TOOL_KEYS = frozenset({"tool", "arguments"})
_TEMPLATE_FIELDS = frozenset({"query", "result", "pattern"})


class PatternConfigError(ValueError):
    """The catalogue is invalid; `field` is the path of the bad field (`patterns[3].type`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


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
    top = _mapping(data, "catalogue", _TOP_KEYS)
    defaults = _mapping(top.get("defaults", {}), "defaults", frozenset(PATTERN_TYPES))
    for kind, values in defaults.items():
        _mapping(values, f"defaults.{kind}", _DEFAULT_KEYS)
    raw = top.get("patterns")
    if not isinstance(raw, list) or not raw:
        raise PatternConfigError("patterns", "must be a non-empty list")
    patterns = tuple(_pattern(item, f"patterns[{i}]", defaults) for i, item in enumerate(raw))
    seen: set[str] = set()
    for i, pattern in enumerate(patterns):
        if pattern.name in seen:
            raise PatternConfigError(f"patterns[{i}].name", f"duplicate name {pattern.name!r}")
        seen.add(pattern.name)
    llm_exemplars = tuple(_str_list(top.get("llm_exemplars", []), "llm_exemplars"))
    return Catalogue(patterns, llm_exemplars)


def _pattern(item: Any, where: str, defaults: Mapping[str, Any]) -> Pattern:
    spec = _mapping(item, where, _PATTERN_KEYS)
    name = _required(spec, "name", where)
    if not isinstance(name, str) or not _NAME.match(name):
        raise PatternConfigError(f"{where}.name", f"must match {_NAME.pattern}, got {name!r}")
    kind = _required(spec, "type", where)
    if kind not in PATTERN_TYPES:
        raise PatternConfigError(
            f"{where}.type", f"must be one of {', '.join(PATTERN_TYPES)}, got {kind!r}"
        )
    description = _required(spec, "description", where)
    if not isinstance(description, str) or not description.strip():
        raise PatternConfigError(f"{where}.description", "must be a non-empty string")
    triggers = tuple(
        _regex(text, f"{where}.triggers[{i}]")
        for i, text in enumerate(_str_list(spec.get("triggers", []), f"{where}.triggers"))
    )
    exemplars = tuple(_str_list(spec.get("exemplars", []), f"{where}.exemplars"))
    if not triggers and not exemplars:
        raise PatternConfigError(f"{where}.triggers", "a pattern needs triggers or exemplars")
    kind_defaults = defaults.get(kind, {})
    budget = _number(spec, kind_defaults, "token_budget", where, PLAN_TOKEN_BUDGETS[kind], int)
    if budget < 1:
        raise PatternConfigError(f"{where}.token_budget", f"must be >= 1, got {budget}")
    timeout = float(
        _number(spec, kind_defaults, "timeout_s", where, DEFAULT_TIMEOUTS_S[kind], float)
    )
    if not 0 < timeout <= TIMEOUT_CEILING_S:
        raise PatternConfigError(
            f"{where}.timeout_s", f"must be in (0, {TIMEOUT_CEILING_S}], got {timeout}"
        )
    ttl = float(
        _number(spec, kind_defaults, "cache_ttl_s", where, DEFAULT_CACHE_TTL_S[kind], float)
    )
    if ttl < 0:
        raise PatternConfigError(f"{where}.cache_ttl_s", f"must be >= 0, got {ttl}")
    template = spec.get("template", kind_defaults.get("template", DEFAULT_TEMPLATE))
    _template(template, f"{where}.template", _TEMPLATE_FIELDS, require="result")
    groups = {g for rx in triggers for g in rx.groupindex} | {"query"}
    calls, memory = _execution(spec, kind, where, groups)
    require_all = spec.get("require_all", False)
    test_only = spec.get("test_only", False)
    for key, value in (("require_all", require_all), ("test_only", test_only)):
        if not isinstance(value, bool):
            raise PatternConfigError(f"{where}.{key}", f"must be true or false, got {value!r}")
    cache_scope = spec.get("cache_scope", "namespace")
    if cache_scope not in ("namespace", "global"):
        raise PatternConfigError(
            f"{where}.cache_scope", f"must be 'namespace' or 'global', got {cache_scope!r}"
        )
    if cache_scope == "global" and kind != "infrastructure":
        raise PatternConfigError(
            f"{where}.cache_scope", "only infrastructure patterns can share one global entry"
        )
    return Pattern(
        name=name,
        type=kind,
        description=description.strip(),
        triggers=triggers,
        exemplars=exemplars,
        token_budget=budget,
        timeout_s=timeout,
        cache_ttl_s=ttl,
        template=template,
        calls=calls,
        memory=memory,
        require_all=require_all,
        test_only=test_only,
        cache_scope=cache_scope,
    )


def _execution(
    spec: Mapping[str, Any], kind: str, where: str, groups: set[str]
) -> tuple[tuple[ToolCall, ...], MemoryOp | None]:
    allowed = {
        "infrastructure": {"tool", "arguments"},
        "memory": {"memory"},
        "hybrid": {"memory", "tools", "require_all"},
    }[kind]
    for key in ("tool", "arguments", "memory", "tools", "require_all"):
        if key in spec and key not in allowed:
            raise PatternConfigError(f"{where}.{key}", f"not allowed for type {kind}")
    if kind == "infrastructure":
        tool = _required(spec, "tool", where)
        return (
            _tool_call({"tool": tool, "arguments": spec.get("arguments", {})}, where, groups),
        ), None
    memory = _memory(_required(spec, "memory", where), f"{where}.memory", groups)
    if kind == "memory":
        return (), memory
    if memory.action != "recall":
        raise PatternConfigError(
            f"{where}.memory.action", "hybrid patterns recall, they do not store"
        )
    raw_tools = _required(spec, "tools", where)
    if not isinstance(raw_tools, list) or not raw_tools:
        raise PatternConfigError(f"{where}.tools", "must be a non-empty list of {tool, arguments}")
    calls = tuple(_tool_call(t, f"{where}.tools[{i}]", groups) for i, t in enumerate(raw_tools))
    return calls, memory


def _tool_call(raw: Any, where: str, groups: set[str]) -> ToolCall:
    spec = _mapping(raw, where, _TOOL_KEYS)
    tool = _required(spec, "tool", where)
    if not isinstance(tool, str) or not _NAME.match(tool):
        raise PatternConfigError(f"{where}.tool", f"must be a tool name, got {tool!r}")
    arguments = _mapping(spec.get("arguments", {}), f"{where}.arguments", None)
    for key, value in arguments.items():
        if isinstance(value, str):
            _template(value, f"{where}.arguments.{key}", groups)
    return ToolCall(tool=tool, arguments=dict(arguments))


def _memory(raw: Any, where: str, groups: set[str]) -> MemoryOp:
    spec = _mapping(raw, where, _MEMORY_KEYS)
    action = _required(spec, "action", where)
    if action not in ("recall", "store"):
        raise PatternConfigError(f"{where}.action", f"must be recall or store, got {action!r}")
    query = spec.get("query", "{query}")
    content = spec.get("content", "{text}")
    _template(query, f"{where}.query", groups | {"text"})
    _template(content, f"{where}.content", groups | {"text"})
    limit = spec.get("limit", 3)
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 20:
        raise PatternConfigError(f"{where}.limit", f"must be an integer in [1, 20], got {limit!r}")
    min_similarity = spec.get("min_similarity", 0.0)
    if (
        isinstance(min_similarity, bool)
        or not isinstance(min_similarity, int | float)
        or not 0 <= min_similarity <= 1
    ):
        raise PatternConfigError(
            f"{where}.min_similarity", f"must be a number in [0, 1], got {min_similarity!r}"
        )
    tags = tuple(_str_list(spec.get("tags", []), f"{where}.tags"))
    for i, tag in enumerate(tags):
        # "{tag}" is always fillable: the executor finds it in the query when no group caught it.
        _template(tag, f"{where}.tags[{i}]", groups | {"text", "tag"})
    return MemoryOp(
        action=action,
        query=query,
        content=content,
        limit=limit,
        min_similarity=float(min_similarity),
        tags=tags,
    )


def _regex(text: str, where: str) -> re.Pattern[str]:
    try:
        return check_regex(text)
    except re.error as exc:
        raise PatternConfigError(where, f"invalid regex: {exc}") from exc
    except UnsafeRegex as exc:
        raise PatternConfigError(where, f"unsafe regex: {exc}") from exc


def _template(
    text: Any, where: str, allowed: set[str] | frozenset[str], require: str | None = None
) -> None:
    if not isinstance(text, str):
        raise PatternConfigError(where, f"must be a string, got {type(text).__name__}")
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise PatternConfigError(where, f"invalid template: {exc}") from exc
    unknown = names - set(allowed)
    if unknown:
        raise PatternConfigError(
            where, f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
        )
    if require and require not in names:
        raise PatternConfigError(where, f"must contain {{{require}}}")


def _mapping(value: Any, where: str, keys: frozenset[str] | None) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PatternConfigError(where, f"must be a mapping, got {type(value).__name__}")
    if keys is not None:
        for key in value:
            if key not in keys:
                raise PatternConfigError(
                    f"{where}.{key}", f"unknown field (allowed: {', '.join(sorted(keys))})"
                )
    return value


def _required(spec: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in spec or spec[key] is None:
        raise PatternConfigError(f"{where}.{key}", "missing required field")
    return spec[key]


def _str_list(value: Any, where: str) -> list[str]:
    if not isinstance(value, list):
        raise PatternConfigError(where, f"must be a list of strings, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not item.strip():
            raise PatternConfigError(f"{where}[{i}]", "must be a non-empty string")
    return list(value)


def _number(
    spec: Mapping[str, Any],
    defaults: Mapping[str, Any],
    key: str,
    where: str,
    fallback: float,
    kind: type,
) -> Any:
    value = spec.get(key, defaults.get(key, fallback))
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (kind is int and not isinstance(value, int))
    ):
        raise PatternConfigError(f"{where}.{key}", f"must be a {kind.__name__}, got {value!r}")
    return value
