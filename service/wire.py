"""JSON text on the wire, both ways, the same on every transport.

In: RFC 8259 only. Python's `json` accepts `NaN`, `Infinity` and `-Infinity`, turns `1e400` into
`inf` and recurses once per nesting level (a few thousand `[` raise RecursionError); here those are
parse errors, and nesting is measured before parsing so the recursion never starts.

Out: replies are always valid UTF-8 JSON. A lone surrogate (`"\\ud800"` in a request can put one
in a Python string) cannot be encoded as UTF-8; callers learn that from `encode_checked` and send an
error object instead of losing the reply.

Speed: `orjson` does the common case both ways (measured here: 72 -> 4 us to encode an
`execute_pattern` reply, 20 -> 2 us to parse a request; `scripts/bench_wire.py`). Whatever it
treats differently from the rules above takes the `json` path, which decides as before: every
orjson failure (non-finite numbers, lone surrogates, ints past 64 bits, non-string keys), and
input with an integer of 19+ digits (orjson would read it as a float).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import numpy as np
import orjson

from service.errors import NestingTooDeep, ParseError

#: A JSON string literal (escapes included); nothing inside one counts as nesting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_OPENERS = (ord("["), ord("{"))


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range for a 64-bit float")
    return value


def nesting_depth(text: str, limit: int) -> int:
    """Deepest nesting of arrays/objects in `text`, exact up to `limit` (cheap when shallow)."""
    if text.count("[") + text.count("{") <= limit:
        return 0  # cannot exceed the limit: skip the scan (the common, small message)
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where(np.isin(codes, _OPENERS), 1, -1)
    return int(np.cumsum(steps).max())


def parse(raw: str | bytes, *, max_depth: int) -> Any:
    """Decode one message; ParseError if it is not strict JSON, NestingTooDeep past `max_depth`."""
    if isinstance(raw, bytes | bytearray):
        try:
            raw = bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"parse error: not UTF-8: {exc}") from None
    depth = nesting_depth(raw, max_depth)
    if depth > max_depth:
        raise NestingTooDeep(
            f"parse error: arrays/objects nested deeper than {max_depth} levels",
            {"limit": max_depth},
        )
    if _LONG_DIGITS.search(raw) is None:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass  # the json path below gives the error its usual message (or accepts it)
    try:
        return json.loads(raw, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:  # unreachable after the depth scan; kept as the last line of defence
        raise NestingTooDeep(
            f"parse error: nested too deeply (limit {max_depth})", {"limit": max_depth}
        ) from None
    except ValueError as exc:  # JSONDecodeError, the hooks above, ints past Python's digit limit
        raise ParseError(f"parse error: {exc}") from None


def _fast_dumps(value: Any) -> bytes | None:
    """UTF-8 JSON by orjson, or None where its output would differ from the json path's."""
    try:
        return orjson.dumps(value, default=_fast_default, option=_FAST_OPTIONS)
    except TypeError:  # orjson.JSONEncodeError: lone surrogate, int past 64 bits, odd keys
        return None


def _fast_default(value: Any) -> Any:
    # `str()` as the json path's `default=str` does, for what orjson passes through.
    return str(value)


#: Datetimes and dataclasses go to `default` (str), as with json; numpy too (no numpy option).
_FAST_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
#: An integer literal orjson would read as a float (past 64 bits).
_LONG_DIGITS = re.compile(r"\d{19}")


def to_json_text(value: Any) -> str:
    """Compact JSON; dates, UUIDs and the like become strings rather than failing."""
    fast = _fast_dumps(value)
    if fast is not None:
        return fast.decode("utf-8")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def is_valid_unicode(text: str) -> bool:
    """False if `text` holds a lone surrogate (cannot be sent as UTF-8)."""
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def encode_checked(value: Any) -> tuple[str, int]:
    """(text, UTF-8 size) of `value` as strict JSON; UnicodeEncodeError if it cannot be sent.

    Non-finite floats in a result (never valid JSON) become null rather than failing the reply.
    """
    fast = _fast_dumps(value)
    if fast is not None:
        return fast.decode("utf-8"), len(fast)
    try:
        text = json.dumps(
            value, separators=(",", ":"), ensure_ascii=False, default=str, allow_nan=False
        )
    except ValueError:
        text = to_json_text(_finite(value))
    return text, len(text.encode("utf-8"))


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
