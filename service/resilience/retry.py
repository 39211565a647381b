"""Retry policy as an object that lists what it retries; exponential backoff with bounded jitter."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Backoff:
    """Delays `initial_s * multiplier**n`, capped at `max_s`, each +/- `jitter` (a fraction)."""

    retry_on: tuple[type[BaseException], ...] = (OSError,)
    initial_s: float = 0.05
    max_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2
    max_attempts: int | None = None
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.initial_s <= 0 or self.max_s < self.initial_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {self.initial_s}, {self.max_s}")
        if self.multiplier < 1:
            raise ValueError(f"multiplier must be >= 1, got {self.multiplier}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def delay(self, attempt: int) -> float:
        """Delay before retry number `attempt` (0-based)."""
        base = min(self.max_s, self.initial_s * self.multiplier**attempt)
        spread = base * self.jitter
        return max(0.0, base + self.rng.uniform(-spread, spread))

    def delays(self) -> Iterator[float]:
        """Successive delays; endless when `max_attempts` is None."""
        attempt = 0
        while self.max_attempts is None or attempt < self.max_attempts - 1:
            yield self.delay(attempt)
            attempt += 1

    def retries(self, exc: BaseException) -> bool:
        """Whether `exc` is one of the listed, retryable failures."""
        return isinstance(exc, self.retry_on)

    async def run(self, fn: Callable[[], Awaitable[T]], sleep: Sleep = asyncio.sleep) -> T:
        """Call `fn` until it succeeds, a non-listed error escapes, or attempts run out."""
        delays = self.delays()
        while True:
            try:
                return await fn()
            except self.retry_on:
                pause = next(delays, None)
                if pause is None:
                    raise
                await sleep(pause)
