"""Checks every tool argument gets before its model does: values PostgreSQL and JSON cannot hold.

PostgreSQL refuses NUL (`\\u0000`) in `text` and in `jsonb` strings; a lone surrogate cannot be
encoded as UTF-8 at all; JSON has no NaN or Infinity. Each would otherwise fail deep in the store
(or the reply) instead of coming back as -32602 naming the field.
"""

from __future__ import annotations

import json
import math
from typing import Any

from service.errors import InvalidParams, InvalidText
from service.wire import is_valid_unicode


def _path(parent: str, key: object) -> str:
    return f"{parent}.{key}" if parent else str(key)


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "contains a NUL character (\\u0000), which cannot be stored"
    if not is_valid_unicode(text):
        return "is not valid Unicode (it holds a lone surrogate)"
    return None


def check_values(value: Any, field: str = "") -> None:
    """Raise InvalidText naming the first string with NUL or a lone surrogate, or non-finite float.

    Iterative, so no input can make it recurse; nesting is already bounded by the parser.
    """
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                raise InvalidText(f"{where or 'params'} {problem}", field=where or "params")
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise InvalidText(
                    f"{where or 'params'} is {item!r}: JSON numbers must be finite",
                    field=where or "params",
                )
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str):
                    problem = _text_problem(key)
                    if problem:
                        raise InvalidText(
                            f"a key in {where or 'params'} {problem}", field=where or "params"
                        )
                stack.append((child, _path(where, key)))
        elif isinstance(item, list | tuple):
            stack.extend((child, _path(where, i)) for i, child in enumerate(item))


def check_json_size(value: Any, limit: int, field: str) -> None:
    """InvalidParams naming `field` if `value` encodes to more than `limit` bytes of JSON."""
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    if size > limit:
        raise InvalidParams(
            f"{field} is {size} bytes of JSON; the limit is {limit}",
            field=field,
            data={"size": size, "limit": limit},
        )
