"""What a cache lookup returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Tier = Literal["l1", "l2", "none"]


@dataclass(frozen=True)
class CacheResult:
    """What a lookup returned; `generation`/`global_generation` are what the value belongs to."""

    value: dict[str, Any]
    hit: bool
    tier: Tier
    generation: int | None
    degraded: bool
    key: str = ""
    global_generation: int | None = None
