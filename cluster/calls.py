"""Bounded calls to many Ray actors at once, and the error a run raises when they fail."""

from __future__ import annotations

import logging
from typing import Any

import ray

log = logging.getLogger(__name__)


class RunError(RuntimeError):
    """A run could not be brought up, or lost requests."""


def get_all(refs: list[Any], timeout_s: float, what: str) -> list[Any]:
    """Every result, or `RunError` naming `what` if any is not ready within the bound."""
    _ready, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    if pending:
        raise RunError(f"timed out after {timeout_s:.0f}s waiting for {what}")
    return ray.get(refs)


def best_effort(refs: list[Any], timeout_s: float) -> None:
    """Wait up to the bound for teardown calls; failures are logged, not raised."""
    ready, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout_s)
    for ref in ready:
        try:
            ray.get(ref)
        except ray.exceptions.RayError as exc:
            log.debug("teardown call failed: %s", exc)
