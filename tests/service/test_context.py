"""The call context is typed: no part of the server is looked up by name or typed `Any`."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from service.context import CallContext, Services

SERVICE = Path(__file__).resolve().parents[2] / "service"
#: Reads of the environment outside `config.py`. embedding.py only sets the model's offline
#: switches (setdefault) before loading it; its thread count comes from `EmbeddingSettings`.
ENVIRONMENT_READERS = {"config.py", "embedding.py"}


def _sources() -> list[tuple[Path, str]]:
    return [(p, p.read_text()) for p in sorted(SERVICE.rglob("*.py"))]


def test_no_service_field_is_typed_any() -> None:
    for cls in (Services, CallContext):
        loose = [f.name for f in dataclasses.fields(cls) if "Any" in str(f.type)]
        if cls is CallContext:
            loose.remove("extra")  # per-session protocol state: JSON-ish by nature
        assert loose == [], (cls.__name__, loose)


def test_no_part_is_looked_up_by_name() -> None:
    by_name = re.compile(r"\b(getattr|hasattr)\([^)]*services\b")
    found = [
        f"{path.relative_to(SERVICE.parent)}:{n}"
        for path, text in _sources()
        for n, line in enumerate(text.splitlines(), 1)
        if by_name.search(line)
    ]
    assert found == []


def test_only_config_reads_the_environment() -> None:
    readers = {path.name for path, text in _sources() if re.search(r"os\.(environ|getenv)", text)}
    assert readers <= ENVIRONMENT_READERS, readers - ENVIRONMENT_READERS


def test_the_name_lookup_check_can_fail() -> None:
    """Negative control: the pattern the lookup check uses matches the code it forbids."""
    by_name = re.compile(r"\b(getattr|hasattr)\([^)]*services\b")
    assert by_name.search('    cache = getattr(ctx.services, "cache", None)')
    assert by_name.search('started = getattr(services, "started_at", None)')
    assert not by_name.search("cache = ctx.services.cache")
