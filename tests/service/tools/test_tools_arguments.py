"""The checks every tool argument gets before its model (no database needed)."""

from __future__ import annotations

import pytest

from service.errors import InvalidParams, InvalidText
from service.tools.arguments import check_json_size, check_values


@pytest.mark.parametrize(
    ("value", "field"),
    [
        ({"content": "a\x00b"}, "content"),
        ({"tags": ["ok", "b\x00"]}, "tags.1"),
        ({"metadata": {"deep": {"x": ["\ud800"]}}}, "metadata.deep.x.0"),
        ({"metadata": {"k\x00": 1}}, "metadata"),
        ({"importance": float("nan")}, "importance"),
        ({"m": {"v": float("-inf")}}, "m.v"),
    ],
)
def test_refused_values_name_their_field(value: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidText) as info:
        check_values(value)
    assert (info.value.code, info.value.field) == (-32602, field)


def test_ordinary_values_pass_and_deep_ones_do_not_recurse() -> None:
    check_values({"a": "é😀", "b": [1, 2.5, None, True], "c": {"d": "\n\t"}})
    deep: object = "ok"
    for _ in range(50_000):  # far past Python's recursion limit
        deep = [deep]
    check_values({"x": deep})


def test_json_size_limit() -> None:
    check_json_size({"a": "x" * 10}, 100, "metadata")
    with pytest.raises(InvalidParams) as info:
        check_json_size({"a": "é" * 100}, 100, "metadata")
    assert info.value.field == "metadata" and info.value.data["size"] > 200
