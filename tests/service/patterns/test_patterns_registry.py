"""Catalogue loading and validation: errors name the bad field; unsafe regexes are refused."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from service.config import DEFAULT_PATTERNS_PATH
from service.patterns.regex_safety import UnsafeRegex, check_regex
from service.patterns.registry import PatternConfigError, PatternRegistry, parse_catalogue


def _one(**overrides: Any) -> dict[str, Any]:
    pattern = {
        "name": "ping_it",
        "type": "infrastructure",
        "description": "ping",
        "triggers": ["^ping$"],
        "exemplars": ["ping the server"],
        "tool": "execute_tool",
    }
    pattern.update(overrides)
    return {"patterns": [pattern]}


def test_shipped_catalogue_is_realistic() -> None:
    registry = PatternRegistry.load(DEFAULT_PATTERNS_PATH)
    kinds = Counter(p.type for p in registry)
    assert len(registry) >= 12
    assert set(kinds) == {"infrastructure", "memory", "hybrid"}
    assert registry.get("execute_tool").calls[0].tool == "execute_tool"
    budgets = {p.type: p.token_budget for p in registry}
    assert budgets == {"infrastructure": 30, "memory": 80, "hybrid": 150}
    assert all(0 < p.timeout_s <= 5.0 for p in registry)
    assert registry.llm_exemplars


def test_test_patterns_hidden_unless_enabled() -> None:
    off = PatternRegistry.load(DEFAULT_PATTERNS_PATH)
    on = PatternRegistry.load(DEFAULT_PATTERNS_PATH, include_test=True)
    names_off = {p.name for p in off}
    assert "slow_test_pattern" not in names_off and "failing_test_pattern" not in names_off
    slow = on.get("slow_test_pattern")
    assert slow.type == "infrastructure" and slow.calls[0].arguments["seconds"] > 5
    assert on.get("failing_test_pattern").require_all
    with pytest.raises(KeyError):
        off.get("slow_test_pattern")


@pytest.mark.parametrize(
    ("overrides", "field", "needle"),
    [
        ({"type": "magic"}, "patterns[0].type", "must be one of"),
        ({"triggers": ["ok", "(unclosed"]}, "patterns[0].triggers[1]", "invalid regex"),
        ({"triggers": ["(a+)+$"]}, "patterns[0].triggers[0]", "nested quantifier"),
        ({"triggers": ["^(x|x)*y$"]}, "patterns[0].triggers[0]", "overlap"),
        ({"description": None}, "patterns[0].description", "missing required field"),
        ({"tool": None}, "patterns[0].tool", "missing required field"),
        ({"timeout_s": 9}, "patterns[0].timeout_s", "(0, 5.0]"),
        ({"token_budget": "lots"}, "patterns[0].token_budget", "must be a int"),
        ({"template": "no result here"}, "patterns[0].template", "{result}"),
        ({"arguments": {"probe": "{nope}"}}, "patterns[0].arguments.probe", "unknown placeholder"),
        ({"colour": "red"}, "patterns[0].colour", "unknown field"),
        (
            {"memory": {"action": "recall"}},
            "patterns[0].memory",
            "not allowed for type infrastructure",
        ),
        ({"exemplars": ["fine", ""]}, "patterns[0].exemplars[1]", "non-empty"),
    ],
)
def test_validation_errors_name_the_field(
    overrides: dict[str, Any], field: str, needle: str
) -> None:
    with pytest.raises(PatternConfigError) as caught:
        parse_catalogue(_one(**overrides))
    assert caught.value.field == field
    assert str(caught.value).startswith(f"{field}: ")
    assert needle in str(caught.value)


def test_error_index_points_at_the_right_pattern() -> None:
    data = _one()
    bad = copy.deepcopy(data["patterns"][0]) | {"name": "second", "triggers": ["ok", "[z-a]"]}
    data["patterns"].append(bad)
    with pytest.raises(PatternConfigError, match=r"^patterns\[1\]\.triggers\[1\]: invalid regex"):
        parse_catalogue(data)


def test_memory_and_hybrid_shapes_are_checked() -> None:
    memory = {"name": "m1", "type": "memory", "description": "d", "exemplars": ["x"]}
    with pytest.raises(PatternConfigError, match=r"^patterns\[0\]\.memory: missing"):
        parse_catalogue({"patterns": [memory]})
    bad_action = memory | {"memory": {"action": "forget"}}
    with pytest.raises(PatternConfigError, match=r"^patterns\[0\]\.memory\.action"):
        parse_catalogue({"patterns": [bad_action]})
    hybrid = memory | {"type": "hybrid", "memory": {"action": "recall"}, "tools": []}
    with pytest.raises(
        PatternConfigError, match=r"^patterns\[0\]\.tools: must be a non-empty list"
    ):
        parse_catalogue({"patterns": [hybrid]})
    store_hybrid = hybrid | {"memory": {"action": "store"}, "tools": [{"tool": "list_tasks"}]}
    with pytest.raises(PatternConfigError, match=r"hybrid patterns recall"):
        parse_catalogue({"patterns": [store_hybrid]})


def test_duplicate_names_rejected() -> None:
    data = _one()
    data["patterns"].append(copy.deepcopy(data["patterns"][0]))
    with pytest.raises(PatternConfigError, match=r"^patterns\[1\]\.name: duplicate"):
        parse_catalogue(data)


@pytest.mark.parametrize("regex", ["(a+)+$", "(a*)*b", "(a|a)*c", r"(\w+\s?)+$", "^(x+x+)+y$"])
def test_redos_regexes_rejected_statically(regex: str) -> None:
    with pytest.raises(UnsafeRegex):
        check_regex(regex)


def test_redos_probe_catches_what_the_static_check_misses() -> None:
    # (a|aa)+ has no nested quantifier and no identical first branch, but is exponential.
    with pytest.raises(UnsafeRegex, match="took"):
        check_regex("^(a|aa)+$")


@pytest.mark.parametrize(
    "regex", [r"^remember (?:that )?(?P<text>.+)$", r"\b(status|health)\b", "(?:foo|bar)+"]
)
def test_safe_regexes_accepted(regex: str) -> None:
    assert check_regex(regex).pattern == regex


def test_reload_bumps_version_and_bad_file_keeps_old(tmp_path: Any) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(DEFAULT_PATTERNS_PATH.read_text(encoding="utf-8"), encoding="utf-8")
    registry = PatternRegistry.load(path)
    before = {p.name for p in registry}
    assert registry.version == 1
    assert registry.reload() == 2
    path.write_text("patterns:\n  - name: x\n    type: nope\n", encoding="utf-8")
    with pytest.raises(PatternConfigError, match=r"patterns\[0\]"):
        registry.reload()
    assert registry.version == 2
    assert {p.name for p in registry} == before


def test_a_bad_default_is_named_where_it_is_written() -> None:
    data = _one() | {"defaults": {"infrastructure": {"token_budget": "x"}}}
    with pytest.raises(
        PatternConfigError, match=r"^defaults\.infrastructure\.token_budget: must be a int"
    ):
        parse_catalogue(data)
    with pytest.raises(PatternConfigError, match=r"^defaults\.magic: unknown field"):
        parse_catalogue(_one() | {"defaults": {"magic": {}}})


def test_a_file_that_is_no_catalogue_names_its_first_stranger() -> None:
    with pytest.raises(PatternConfigError, match=r"^catalogue\.server: unknown field"):
        parse_catalogue({"server": {}, "patterns": []})
    with pytest.raises(PatternConfigError, match=r"^catalogue: must be a mapping"):
        parse_catalogue(["a list"])
