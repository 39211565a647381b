"""docs/architecture.md names modules; every one of them must exist."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
#: a backticked path of ours: `service/jsonrpc.py`, `configs/patterns.yaml`, `tests/analysis/`
_PATH = re.compile(
    r"`((?:service|cluster|actors|experiments|analysis|configs|tests|docs)/[\w./-]*)`"
)


def named_paths(text: str) -> list[str]:
    return sorted(set(_PATH.findall(text)))


def missing(text: str, root: Path = ROOT) -> list[str]:
    return [p for p in named_paths(text) if not (root / p).exists()]


def test_every_module_the_architecture_page_names_exists() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert len(named_paths(text)) >= 40  # the page really names its modules
    assert missing(text) == []


def test_both_paths_name_every_step() -> None:
    text = DOC.read_text(encoding="utf-8")
    for step in ("socket", "dispatcher", "tool registry", "engine", "cache", "store"):
        assert f"| {step} |" in text, step
    for step in ("experiment", "cluster", "actors", "rows", "analysis"):
        assert f"| {step} |" in text, step


def test_a_renamed_module_is_caught() -> None:
    """Negative control: a page naming a module that is not there fails."""
    text = "the dispatcher is `service/jsonrpc.py`, the old one `service/dispatcher.py`"
    assert missing(text) == ["service/dispatcher.py"]
