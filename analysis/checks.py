"""Named criteria: one plan success criterion with its threshold, measured value and verdict.

A `Criterion` is plain data so reports (JUnit, JSON, Markdown, HTML, terminal) all render the same
list. Builders compare a measured number with a threshold; a measured value of `None` (nothing to
measure, e.g. no reads in the run) yields a *skipped* criterion rather than a silent pass.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Criterion:
    """One checked success criterion of the integration test plan."""

    name: str
    description: str
    threshold: str
    measured: float | str | None
    passed: bool
    critical: bool = True
    unit: str = ""
    section: str = ""
    skipped: bool = False
    # Which metrics.json key this criterion judges (lets the terminal box show ✓/✗ per metric).
    metric: str | None = None

    @property
    def failed(self) -> bool:
        """Judged and not passed (a skipped criterion is not a failure)."""
        return not self.passed and not self.skipped

    def measured_text(self) -> str:
        """The measured value formatted with its unit."""
        if self.measured is None:
            return "n/a"
        if isinstance(self.measured, float):
            text = f"{self.measured:.4g}" if abs(self.measured) < 1e6 else f"{self.measured:.0f}"
        else:
            text = str(self.measured)
        return f"{text}{self.unit}" if self.unit else text

    def message(self) -> str:
        """`threshold vs measured` line used in failure messages."""
        verdict = "SKIPPED" if self.skipped else ("PASS" if self.passed else "FAIL")
        return f"{verdict}: {self.name}: expected {self.threshold}, measured {self.measured_text()}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for metrics.json."""
        return asdict(self)


def _check(
    name: str,
    measured: float | None,
    threshold: float,
    symbol: str,
    ok: bool,
    *,
    description: str = "",
    critical: bool = True,
    unit: str = "",
    section: str = "",
    metric: str | None = None,
) -> Criterion:
    """A numeric criterion; a missing (None or NaN) measurement is skipped, never passed."""
    skipped = measured is None or (isinstance(measured, float) and math.isnan(measured))
    return Criterion(
        name=name,
        description=description,
        threshold=f"{symbol} {threshold:g}{unit}",
        measured=None if skipped else float(measured),  # type: ignore[arg-type]
        passed=ok and not skipped,
        critical=critical,
        unit=unit,
        section=section,
        skipped=skipped,
        metric=metric,
    )


def at_least(
    name: str, measured: float | None, threshold: float, *, strict: bool = False, **options: Any
) -> Criterion:
    """measured >= threshold (or > with strict=True); `options` are `_check`'s keywords
    (description, critical, unit, section, metric)."""
    ok = measured is not None and (measured > threshold if strict else measured >= threshold)
    return _check(name, measured, threshold, ">" if strict else "≥", ok, **options)


def at_most(
    name: str, measured: float | None, threshold: float, *, strict: bool = False, **options: Any
) -> Criterion:
    """measured <= threshold (or < with strict=True); `options` as for `at_least`."""
    ok = measured is not None and (measured < threshold if strict else measured <= threshold)
    return _check(name, measured, threshold, "<" if strict else "≤", ok, **options)


def equals(name: str, measured: float | None, expected: float, **options: Any) -> Criterion:
    """measured == expected (counts of violations: expected 0); `options` as for `at_least`."""
    ok = measured is not None and measured == expected
    return _check(name, measured, expected, "=", ok, **options)


def holds(
    name: str,
    ok: bool,
    *,
    measured: str,
    expectation: str,
    description: str = "",
    critical: bool = True,
    section: str = "",
) -> Criterion:
    """A boolean fact (e.g. 'error message names the database') with its evidence."""
    return Criterion(
        name=name,
        description=description,
        threshold=expectation,
        measured=measured,
        passed=ok,
        critical=critical,
        section=section,
    )


def skipped(name: str, reason: str, *, section: str = "", critical: bool = True) -> Criterion:
    """A criterion that could not be judged in this run (reason given as the measured text)."""
    return Criterion(
        name=name,
        description=reason,
        threshold="n/a",
        measured=reason,
        passed=False,
        critical=critical,
        section=section,
        skipped=True,
    )


@dataclass(frozen=True)
class Tally:
    """Totals over a list of criteria."""

    total: int
    passed: int
    failed: int
    skipped: int
    critical_failed: int

    @property
    def pass_rate(self) -> float:
        """Passed over judged (skipped ones left out); 1.0 when nothing was judged."""
        judged = self.passed + self.failed
        return self.passed / judged if judged else 1.0

    @property
    def ok(self) -> bool:
        """True when no critical criterion failed (non-critical ones are reported, not enforced)."""
        return self.critical_failed == 0


def tally(criteria: list[Criterion]) -> Tally:
    """Count passed, failed, skipped and failed-critical criteria."""
    passed = sum(1 for c in criteria if c.passed and not c.skipped)
    skipped_n = sum(1 for c in criteria if c.skipped)
    failed = [c for c in criteria if c.failed]
    return Tally(
        total=len(criteria),
        passed=passed,
        failed=len(failed),
        skipped=skipped_n,
        critical_failed=sum(1 for c in failed if c.critical),
    )
