"""Hand-built history tables for the analysis tests (times given in milliseconds)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.history_rows import MS, Rows

__all__ = ["MS", "Rows"]


@pytest.fixture
def rows() -> Callable[[], Rows]:
    """A factory of fresh row builders."""
    return Rows
