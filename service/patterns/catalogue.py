"""The catalogue file's shape as pydantic models, and their errors as `PatternConfigError`.

Pydantic checks each field (types, ranges, names, regex safety, known keys); the checks that
need more than one field (what a pattern type may carry, placeholders its triggers can fill,
the per-type defaults) run in model validators. Every error names the field the way a reader
finds it in the file (`patterns[3].triggers[0]: invalid regex: ...`): an error raised with
`_bad(message, sub)` is reported at the validator's location plus `sub`.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from service.patterns.regex_safety import UnsafeRegex, check_regex

PatternType = Literal["infrastructure", "memory", "hybrid"]
PATTERN_TYPES: tuple[str, ...] = ("infrastructure", "memory", "hybrid")
NAME = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
TEMPLATE_FIELDS = frozenset({"query", "result", "pattern"})
#: Triggers match case-insensitively (the flags `check_regex` compiles with by default).
TRIGGER_FLAGS = re.IGNORECASE
_ERROR_TYPE = "catalogue"


class PatternConfigError(ValueError):
    """The catalogue is invalid; `field` is the path of the bad field (`patterns[3].type`)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def _bad(message: str, sub: str = "") -> PydanticCustomError:
    """An error about the field `sub` below wherever it is raised."""
    return PydanticCustomError(_ERROR_TYPE, "{message}", {"message": message, "sub": sub})


def _join(path: str, sub: str) -> str:
    if not sub:
        return path
    if not path:
        return sub
    return path + sub if sub.startswith("[") else f"{path}.{sub}"


def _path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path = _join(path, f"[{part}]" if isinstance(part, int) else str(part))
    return path


def config_error(exc: ValidationError, root: str = "catalogue") -> PatternConfigError:
    """The first error of a validation as `PatternConfigError` naming its field."""
    first = exc.errors(include_url=False)[0]
    where = _path(tuple(first["loc"]))
    kind, ctx = first["type"], first.get("ctx") or {}
    if kind == _ERROR_TYPE:
        return PatternConfigError(_join(where, ctx.get("sub", "")) or root, ctx["message"])
    if kind == "missing":
        return PatternConfigError(where, "missing required field")
    return PatternConfigError(where or root, first["msg"])


# ---------------------------------------------------------------- field checks


def _non_empty(value: Any) -> Any:
    if not isinstance(value, str) or not value.strip():
        raise _bad("must be a non-empty string")
    return value


def _string_list(value: Any) -> Any:
    if not isinstance(value, list):
        raise _bad(f"must be a list of strings, got {type(value).__name__}")
    return value


def _name(value: Any) -> Any:
    if not isinstance(value, str) or not NAME.match(value):
        raise _bad(f"must match {NAME.pattern}, got {value!r}")
    return value


def _tool_name(value: Any) -> Any:
    if not isinstance(value, str) or not NAME.match(value):
        raise _bad(f"must be a tool name, got {value!r}")
    return value


def _kind(value: Any) -> Any:
    if value not in PATTERN_TYPES:
        raise _bad(f"must be one of {', '.join(PATTERN_TYPES)}, got {value!r}")
    return value


def _regex(value: str) -> str:
    try:
        check_regex(value, TRIGGER_FLAGS)
    except re.error as exc:
        raise _bad(f"invalid regex: {exc}") from exc
    except UnsafeRegex as exc:
        raise _bad(f"unsafe regex: {exc}") from exc
    return value


def _number(kind: type) -> BeforeValidator:
    def check(value: Any) -> Any:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or (kind is int and not isinstance(value, int))
        ):
            raise _bad(f"must be a {kind.__name__}, got {value!r}")
        return value

    return BeforeValidator(check)


def _flag(value: Any) -> Any:
    if not isinstance(value, bool):
        raise _bad(f"must be true or false, got {value!r}")
    return value


def _string(value: Any) -> Any:
    if not isinstance(value, str):
        raise _bad(f"must be a string, got {type(value).__name__}")
    return value


def _call_list(value: Any) -> Any:
    if not isinstance(value, list) or not value:
        raise _bad("must be a non-empty list of {tool, arguments}")
    return value


def _mapping(value: Any) -> Any:
    if not isinstance(value, dict):
        raise _bad(f"must be a mapping, got {type(value).__name__}")
    return value


def check_template(
    text: Any, allowed: set[str] | frozenset[str], where: str, require: str | None = None
) -> None:
    """A `str.format` template using only `allowed` placeholders (and `require`, if given)."""
    if not isinstance(text, str):
        raise _bad(f"must be a string, got {type(text).__name__}", where)
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise _bad(f"invalid template: {exc}", where) from exc
    unknown = names - set(allowed)
    if unknown:
        raise _bad(f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)}", where)
    if require and require not in names:
        raise _bad(f"must contain {{{require}}}", where)


NonEmpty = Annotated[str, BeforeValidator(_non_empty)]
Strings = Annotated[list[NonEmpty], BeforeValidator(_string_list)]
Regexes = Annotated[
    list[Annotated[NonEmpty, AfterValidator(_regex)]], BeforeValidator(_string_list)
]
Int = Annotated[int, _number(int)]
Float = Annotated[float, _number(float)]
Flag = Annotated[bool, BeforeValidator(_flag)]
Arguments = Annotated[dict[str, Any], BeforeValidator(_mapping)]
Text = Annotated[str, BeforeValidator(_string)]


# ---------------------------------------------------------------- models


class _Spec(BaseModel):
    """A mapping of the file: known keys only, and `key: null` means the key is absent."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    #: where an unknown key is reported, relative to this mapping
    _unknown_at: ClassVar[str] = ""

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise _bad(f"must be a mapping, got {type(data).__name__}")
        allowed = ", ".join(sorted(cls.model_fields))
        for key in data:
            if key not in cls.model_fields:
                raise _bad(f"unknown field (allowed: {allowed})", cls._unknown_at + str(key))
        return cls._check_mapping({k: v for k, v in data.items() if v is not None})

    @classmethod
    def _check_mapping(cls, data: dict[str, Any]) -> dict[str, Any]:
        """Checks of the raw mapping before its fields are read (known keys only, no nulls)."""
        return data


class ToolCallSpec(_Spec):
    tool: Annotated[str, BeforeValidator(_tool_name)]
    arguments: Arguments = {}


class MemorySpec(_Spec):
    action: Literal["recall", "store"]
    query: Text = "{query}"
    content: Text = "{text}"
    limit: int = 3
    min_similarity: float = 0.0
    tags: Strings = []

    @classmethod
    def _check_mapping(cls, data: dict[str, Any]) -> dict[str, Any]:
        action = data.get("action")
        if action is not None and action not in ("recall", "store"):
            raise _bad(f"must be recall or store, got {action!r}", "action")
        limit = data.get("limit", 3)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 20:
            raise _bad(f"must be an integer in [1, 20], got {limit!r}", "limit")
        similarity = data.get("min_similarity", 0.0)
        if (
            isinstance(similarity, bool)
            or not isinstance(similarity, int | float)
            or not 0 <= similarity <= 1
        ):
            raise _bad(f"must be a number in [0, 1], got {similarity!r}", "min_similarity")
        return data

    def check_placeholders(self, groups: set[str], where: str) -> None:
        """Query and content use trigger groups or the text; a tag may also be `{tag}`."""
        check_template(self.query, groups | {"text"}, f"{where}.query")
        check_template(self.content, groups | {"text"}, f"{where}.content")
        for i, tag in enumerate(self.tags):
            # "{tag}" is always fillable: the executor finds it in the query when no group did.
            check_template(tag, groups | {"text", "tag"}, f"{where}.tags[{i}]")


class DefaultsSpec(_Spec):
    token_budget: Int | None = None
    timeout_s: Float | None = None
    cache_ttl_s: Float | None = None
    template: Text | None = None


class DefaultsByType(_Spec):
    infrastructure: DefaultsSpec = DefaultsSpec()
    memory: DefaultsSpec = DefaultsSpec()
    hybrid: DefaultsSpec = DefaultsSpec()


#: Keys that say what runs, and the pattern types that may carry each.
_EXECUTION_KEYS: dict[str, tuple[str, ...]] = {
    "tool": ("infrastructure",),
    "arguments": ("infrastructure",),
    "memory": ("memory", "hybrid"),
    "tools": ("hybrid",),
    "require_all": ("hybrid",),
}


class PatternSpec(_Spec):
    """One pattern as written; `catalogue.build` fills in the per-type defaults."""

    name: Annotated[str, BeforeValidator(_name)]
    type: Annotated[PatternType, BeforeValidator(_kind)]
    description: NonEmpty
    triggers: Regexes = []
    exemplars: Strings = []
    token_budget: Int | None = None
    timeout_s: Float | None = None
    cache_ttl_s: Float | None = None
    template: Text | None = None
    tool: str | None = None
    arguments: Arguments | None = None
    memory: MemorySpec | None = None
    tools: Annotated[list[ToolCallSpec], BeforeValidator(_call_list)] | None = None
    require_all: Flag = False
    test_only: Flag = False
    cache_scope: str = "namespace"

    @classmethod
    def _check_mapping(cls, data: dict[str, Any]) -> dict[str, Any]:
        """What may run depends on the type: refuse the others' keys before reading them."""
        kind = data.get("type")
        if kind in PATTERN_TYPES:
            for key, kinds in _EXECUTION_KEYS.items():
                if data.get(key) is not None and kind not in kinds:
                    raise _bad(f"not allowed for type {kind}", key)
        return data

    @model_validator(mode="after")
    def _consistent(self) -> PatternSpec:
        if not self.triggers and not self.exemplars:
            raise _bad("a pattern needs triggers or exemplars", "triggers")
        groups = self.groups()
        if self.type == "infrastructure":
            if self.tool is None:
                raise _bad("missing required field", "tool")
            call = _validate(ToolCallSpec, {"tool": self.tool, "arguments": self.arguments or {}})
            _check_arguments(call, groups, "arguments")
        else:
            if self.memory is None:
                raise _bad("missing required field", "memory")
            self.memory.check_placeholders(groups, "memory")
        if self.type == "hybrid":
            assert self.memory is not None
            if self.memory.action != "recall":
                raise _bad("hybrid patterns recall, they do not store", "memory.action")
            if not self.tools:
                raise _bad("must be a non-empty list of {tool, arguments}", "tools")
            for i, call in enumerate(self.tools):
                _check_arguments(call, groups, f"tools[{i}].arguments")
        if self.cache_scope not in ("namespace", "global"):
            raise _bad(f"must be 'namespace' or 'global', got {self.cache_scope!r}", "cache_scope")
        if self.cache_scope == "global" and self.type != "infrastructure":
            raise _bad("only infrastructure patterns can share one global entry", "cache_scope")
        return self

    def compiled_triggers(self) -> tuple[re.Pattern[str], ...]:
        """The triggers as the router matches them (already proven safe by `check_regex`)."""
        return tuple(re.compile(text, TRIGGER_FLAGS) for text in self.triggers)

    def groups(self) -> set[str]:
        """Placeholders the triggers can fill: their named groups, and always the query."""
        return {g for rx in self.compiled_triggers() for g in rx.groupindex} | {"query"}

    def calls(self) -> list[ToolCallSpec]:
        """What runs beside the memory part: the one tool, or the hybrid's tools."""
        if self.type == "infrastructure":
            assert self.tool is not None
            return [ToolCallSpec(tool=self.tool, arguments=self.arguments or {})]
        return list(self.tools or [])


def _check_arguments(call: ToolCallSpec, groups: set[str], where: str) -> None:
    for key, value in call.arguments.items():
        if isinstance(value, str):
            check_template(value, groups, f"{where}.{key}")


def _validate(model: type[_Spec], data: Any) -> Any:
    """Validate a nested value built by a validator, keeping the inner error's field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        error = config_error(exc, "")
        raise _bad(error.message, error.field) from None


class CatalogueSpec(_Spec):
    """The whole file."""

    version: Any = None
    defaults: DefaultsByType = DefaultsByType()
    patterns: list[PatternSpec]
    llm_exemplars: Strings = []

    _unknown_at: ClassVar[str] = "catalogue."

    @classmethod
    def _check_mapping(cls, data: dict[str, Any]) -> dict[str, Any]:
        patterns = data.get("patterns")
        if not isinstance(patterns, list) or not patterns:
            raise _bad("must be a non-empty list", "patterns")
        return data

    @model_validator(mode="after")
    def _unique_names(self) -> CatalogueSpec:
        seen: set[str] = set()
        for i, pattern in enumerate(self.patterns):
            if pattern.name in seen:
                raise _bad(f"duplicate name {pattern.name!r}", f"patterns[{i}].name")
            seen.add(pattern.name)
        return self
