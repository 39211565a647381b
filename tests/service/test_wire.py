"""Strict JSON in, encodable JSON out: the parser every transport shares."""

from __future__ import annotations

import json

import pytest

from service.errors import NestingTooDeep, ParseError
from service.wire import encode_checked, is_valid_unicode, nesting_depth, parse


@pytest.mark.parametrize(
    "text",
    ["NaN", "[Infinity]", '{"a": -Infinity}', "1e400", "[-1e999]", "9" * 5000, "{", b"\xff"],
)
def test_not_rfc_8259_is_a_parse_error(text: str | bytes) -> None:
    with pytest.raises(ParseError):
        parse(text, max_depth=64)


def test_depth_is_measured_before_parsing() -> None:
    assert parse("[" * 64 + "]" * 64, max_depth=64) is not None
    for deep in ("[" * 65 + "]" * 65, "[" * 100_000, '{"a":' * 3000 + "1" + "}" * 3000):
        with pytest.raises(NestingTooDeep) as info:
            parse(deep, max_depth=64)
        assert info.value.code == -32700 and info.value.data == {"limit": 64}


def test_brackets_inside_strings_do_not_count() -> None:
    text = json.dumps({"s": "[" * 500 + '\\"{' * 100, "t": ["]]]"]})
    assert nesting_depth(text, 4) == 2
    assert parse(text, max_depth=4)["t"] == ["]]]"]


def test_finite_numbers_and_ordinary_text_pass() -> None:
    value = parse(
        '{"f": 1.5e300, "i": -7, "s": "\\u00e9\\u0000", "big": 123456789012345678901}', max_depth=8
    )
    assert value == {"f": 1.5e300, "i": -7, "s": "é\x00", "big": 123456789012345678901}


def test_lone_surrogates_are_seen_and_reported_by_the_encoder() -> None:
    assert is_valid_unicode("plain") and is_valid_unicode("é😀")
    assert not is_valid_unicode("a\ud800")
    with pytest.raises(UnicodeEncodeError):
        encode_checked({"x": "\udfff"})
    text, size = encode_checked({"x": "é", "n": float("inf")})
    assert json.loads(text) == {"x": "é", "n": None} and size == len(text.encode())


def _json_path(value: object) -> str:
    """What the encoder produced before orjson: the reference for the fast path."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def test_fast_path_reads_like_the_json_path() -> None:
    big = 123456789012345678901234567890
    assert parse(f'{{"jsonrpc":"2.0","id":{big}}}', max_depth=64)["id"] == big  # not a float
    assert parse('{"a":1,"a":2}', max_depth=64) == {"a": 2}
    assert parse('"\\ud800"', max_depth=64) == "\ud800"  # orjson refuses; json reads it
    for text in ("[1,]", "NaN", "1e400", '{"a":1', "\xff"):
        with pytest.raises(ParseError):
            parse(text, max_depth=64)


def test_fast_path_writes_like_the_json_path() -> None:
    import dataclasses
    import datetime
    import uuid

    @dataclasses.dataclass
    class Row:
        n: int

    when = datetime.datetime(2026, 12, 1, 23, 50, 6, 123456, tzinfo=datetime.UTC)
    value = {
        "when": when,
        "day": when.date(),
        "id": uuid.UUID(int=7),
        "row": Row(3),
        "big": 2**70,
        "floats": [0.1, 1e16, -2.5e-8],
        "text": "ünïcödé ✓ \x00",
        "nested": {"list": [True, None, {"k": "v"}]},
    }
    text, size = encode_checked(value)
    assert json.loads(text) == json.loads(_json_path(value))
    assert size == len(text.encode("utf-8"))
    assert json.loads(encode_checked({"x": float("nan")})[0]) == {"x": None}
    with pytest.raises(UnicodeEncodeError):
        encode_checked({"bad": "\ud800"})
