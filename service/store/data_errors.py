"""PostgreSQL data errors become -32602 naming the field, at the store boundary.

Tool validation refuses NUL characters, lone surrogates and non-finite numbers before they get
here; this is the safety net for whatever still reaches PostgreSQL and is refused as data
(SQLSTATE class 22: NUL in `text` 22021, `\\u0000` in `jsonb` 22P05, `NaN` in JSON text 22P02,
an out-of-range number 22003 ...) or by asyncpg's own encoder ("invalid input for query argument
$N"). Without it those surface as -32603.

Use: decorate a store method with the names of its parameters that carry caller data,
`@maps_data_errors("content", "tags", "metadata")`; the field named in the error is the first
of them (or a key inside one, e.g. `metadata.note`) holding a value of the kind the error is
about, else the first one listed.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ParamSpec, TypeVar

import asyncpg
from asyncpg.exceptions import _base as asyncpg_base

from service.errors import InvalidParams
from service.wire import is_valid_unicode

P = ParamSpec("P")
T = TypeVar("T")

#: Server-side data errors (SQLSTATE class 22) and asyncpg's client-side argument encoding error.
DATA_ERRORS: tuple[type[BaseException], ...] = (asyncpg.DataError, asyncpg_base.DataError)

_TEXT_STATES = frozenset({"22021", "22P05"})  # character not in repertoire, untranslatable
_NUMBER_STATES = frozenset({"22003", "22P02"})  # out of range, invalid text representation


def _bad_text(value: Any) -> bool:
    return isinstance(value, str) and ("\x00" in value or not is_valid_unicode(value))


def _bad_number(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 2**63


def _culprit(value: Any, path: str, bad: Callable[[Any], bool]) -> str | None:
    """Path of the first value inside `value` (keys included) for which `bad` holds."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop(0)
        if bad(item):
            return where
        if isinstance(item, Mapping):
            for key, child in item.items():
                if bad(key):
                    return where
                stack.append((child, f"{where}.{key}"))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{where}.{i}") for i, child in enumerate(item))
    return None


def field_of(exc: BaseException, values: Mapping[str, Any]) -> str:
    """The caller-facing field an error is about, among `values` (parameter name -> value)."""
    state = getattr(exc, "sqlstate", None)
    if state in _TEXT_STATES:
        checks: tuple[Callable[[Any], bool], ...] = (_bad_text,)
    elif state in _NUMBER_STATES:
        checks = (_bad_number,)
    else:
        checks = (_bad_text, _bad_number)
    for bad in checks:
        for name, value in values.items():
            found = _culprit(value, name, bad)
            if found:
                return found
    return next(iter(values), "params")


def to_invalid_params(exc: BaseException, values: Mapping[str, Any]) -> InvalidParams:
    """Our -32602 for a data error raised while storing `values`."""
    field = field_of(exc, values)
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    data: dict[str, Any] = {}
    state = getattr(exc, "sqlstate", None)
    if state:
        data["sqlstate"] = state
    return InvalidParams(f"{field}: the database refused the value: {detail}", field, data)


def maps_data_errors(
    *fields: str, unwrap: tuple[str, ...] = ()
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T]]]:
    """Decorator for async store methods: data errors become InvalidParams naming the field.

    Parameters listed in `unwrap` are mappings of field name -> value (e.g. an update's
    `changes`); their keys are the fields.
    """

    def wrap(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        async def inner(*args: P.args, **kwargs: P.kwargs) -> T:
            try:
                return await fn(*args, **kwargs)
            except DATA_ERRORS as exc:
                bound = signature.bind_partial(*args, **kwargs).arguments
                values: dict[str, Any] = {}
                for name in fields:
                    value = bound.get(name)
                    if name in unwrap and isinstance(value, Mapping):
                        values.update(value)
                    else:
                        values[name] = value
                raise to_invalid_params(exc, values) from exc

        return inner

    return wrap
