"""Named criteria: one plan success criterion with its threshold, evidence, measured value and verdict.

A `Criterion` is plain data so reports (JUnit, JSON, Markdown, HTML, terminal) all render the same
list. Every criterion carries its `Evidence`: what it must see before its verdict means anything
("≥ 20 comparable read-after-write pairs") and what the run gave it. The evidence is a required
field, and a criterion whose evidence falls short cannot pass (`Criterion.__post_init__` refuses
it): too little evidence is a failure of that criterion, never a pass.

Verdicts follow Jepsen's valid? true / false / unknown: `pass`, `fail`, or `skip` (could not be
judged here, e.g. servers given by URL cannot be stopped). A skipped critical criterion fails the
run unless the user names it (`--allow-skip NAME`, see `allow_skips`).

Timing criteria (`timing`: a latency, duration or rate measured by the load generator's clocks)
can be *not measurable*: when the generator itself was saturated during the phases they judge
(`analysis.generator`), its timings measure its own backlog, not the service. Such a criterion
does not pass (no evidence of the service meeting its target) and says why (`not_measurable`),
so the report blames the generator, not the service.

Builders: `at_least`, `at_most`, `equals` (a number against a threshold), `holds` (a boolean fact
with its evidence), `skipped`. All take `evidence=Evidence(...)` as a required keyword.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

Verdict = Literal["pass", "fail", "skip"]
#: Units of criteria judging time or rate as the load generator measured it.
TIMING_UNITS = frozenset({"ms", "s", "rps", "qps", "req/s"})


@dataclass(frozen=True)
class Evidence:
    """What a criterion needs to see (`need` or more `what`) and how many the run gave it (`got`).

    `got` is None when the run could not count it at all (e.g. the server does not report it);
    that is never enough.
    """

    what: str
    got: float | None
    need: float = 1

    def __post_init__(self) -> None:
        if not self.what:
            raise ValueError("evidence needs a description of what is counted")
        if self.need < 0 or not math.isfinite(self.need):
            raise ValueError(f"evidence need must be a finite number >= 0, got {self.need}")

    @property
    def enough(self) -> bool:
        """The run produced at least `need` of what the criterion must see."""
        return self.got is not None and math.isfinite(self.got) and self.got >= self.need

    def requirement(self) -> str:
        """'≥ 20 comparable reads'."""
        return f"≥ {_num(self.need)} {self.what}"

    def text(self) -> str:
        """'25 comparable reads (need ≥ 20)'."""
        got = "unknown" if self.got is None else _num(self.got)
        return f"{got} {self.what} (need ≥ {_num(self.need)})"

    def shortfall(self) -> str:
        """'insufficient evidence: 0 comparable reads (need ≥ 20)'."""
        return f"insufficient evidence: {self.text()}"


def _num(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Criterion:
    """One checked success criterion of the integration test plan."""

    name: str
    description: str
    threshold: str
    measured: float | str | None
    passed: bool
    evidence: Evidence
    critical: bool = True
    unit: str = ""
    section: str = ""
    skipped: bool = False
    #: The user accepted this skip (`--allow-skip NAME`): it no longer fails the run.
    skip_allowed: bool = False
    # Which metrics.json key this criterion judges (lets the terminal box show ✓/✗ per metric).
    metric: str | None = None
    #: Judges a time or rate the load generator measured (see the module doc).
    timing: bool = False
    #: Why this criterion could not be judged against the service (it does not pass).
    not_measurable: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.evidence, Evidence):
            raise TypeError(f"criterion {self.name!r}: evidence must be an Evidence")
        if self.passed and not self.evidence.enough:
            raise ValueError(f"criterion {self.name!r} cannot pass: {self.evidence.shortfall()}")
        if self.passed and self.skipped:
            raise ValueError(f"criterion {self.name!r} cannot be both passed and skipped")
        if self.passed and self.not_measurable:
            raise ValueError(f"criterion {self.name!r} cannot pass: {self.not_measurable}")

    @property
    def verdict(self) -> Verdict:
        """pass, fail or skip (Jepsen's true / false / unknown)."""
        if self.skipped:
            return "skip"
        return "pass" if self.passed else "fail"

    @property
    def failed(self) -> bool:
        """Judged and not passed (including: not enough evidence to judge it)."""
        return not self.passed and not self.skipped

    @property
    def insufficient(self) -> bool:
        """Failed because the run did not produce the evidence it needs."""
        return self.failed and not self.evidence.enough

    @property
    def blocks(self) -> bool:
        """Fails the run: a critical failure, or a critical skip the user did not allow."""
        if not self.critical:
            return False
        return self.failed or (self.skipped and not self.skip_allowed)

    def measured_text(self) -> str:
        """The measured value formatted with its unit."""
        if self.measured is None:
            return "n/a"
        if isinstance(self.measured, float):
            text = f"{self.measured:.4g}" if abs(self.measured) < 1e6 else f"{self.measured:.0f}"
        else:
            text = str(self.measured)
        return f"{text}{self.unit}" if self.unit else text

    def status(self) -> str:
        """PASS, FAIL, NOT MEASURABLE, SKIPPED, SKIPPED (allowed) or SKIPPED (not allowed)."""
        if self.not_measurable and not self.skipped:
            return "NOT MEASURABLE"
        if not self.skipped:
            return "PASS" if self.passed else "FAIL"
        if not self.critical:
            return "SKIPPED"
        return "SKIPPED (allowed)" if self.skip_allowed else "SKIPPED (not allowed)"

    def message(self) -> str:
        """One line: verdict, name, and expected vs measured (or why it could not be judged)."""
        head = f"{self.status()}: {self.name}: "
        if self.skipped:
            hint = "" if self.skip_allowed or not self.critical else f"; --allow-skip {self.name}"
            return f"{head}{self.measured_text()}{hint}"
        if self.not_measurable:
            return (
                f"{head}{self.not_measurable}; measured {self.measured_text()} against "
                f"{self.threshold} (not a verdict on the service)"
            )
        if self.insufficient:
            return f"{head}{self.evidence.shortfall()}; measured {self.measured_text()}"
        return f"{head}expected {self.threshold}, measured {self.measured_text()}"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for metrics.json (evidence included, with whether it was enough)."""
        out = asdict(self)
        out["evidence"]["enough"] = self.evidence.enough
        out["verdict"] = self.verdict
        out["insufficient_evidence"] = self.insufficient
        return out


def _finite(measured: float | None) -> bool:
    return measured is not None and not (isinstance(measured, float) and math.isnan(measured))


def _check(
    name: str,
    measured: float | None,
    threshold: float,
    symbol: str,
    ok: bool,
    *,
    evidence: Evidence,
    description: str = "",
    critical: bool = True,
    unit: str = "",
    section: str = "",
    metric: str | None = None,
    timing: bool | None = None,
) -> Criterion:
    """A numeric criterion: passes when `ok`, something was measured and the evidence suffices.

    A missing (None or NaN) measurement fails; it is never skipped and never passed. `timing`
    defaults to whether `unit` is a time or rate (`TIMING_UNITS`).
    """
    has_value = _finite(measured)
    return Criterion(
        name=name,
        description=description,
        threshold=f"{symbol} {threshold:g}{unit}",
        measured=float(measured) if has_value else None,  # type: ignore[arg-type]
        passed=ok and has_value and evidence.enough,
        evidence=evidence,
        critical=critical,
        unit=unit,
        section=section,
        metric=metric,
        timing=unit.strip() in TIMING_UNITS if timing is None else timing,
    )


def at_least(
    name: str,
    measured: float | None,
    threshold: float,
    *,
    evidence: Evidence,
    strict: bool = False,
    **options: Any,
) -> Criterion:
    """measured >= threshold (or > with strict=True); `options` are description, critical,
    unit, section, metric, timing."""
    ok = _finite(measured) and (measured > threshold if strict else measured >= threshold)  # type: ignore[operator]
    return _check(
        name, measured, threshold, ">" if strict else "≥", ok, evidence=evidence, **options
    )


def at_most(
    name: str,
    measured: float | None,
    threshold: float,
    *,
    evidence: Evidence,
    strict: bool = False,
    **options: Any,
) -> Criterion:
    """measured <= threshold (or < with strict=True); `options` as for `at_least`."""
    ok = _finite(measured) and (measured < threshold if strict else measured <= threshold)  # type: ignore[operator]
    return _check(
        name, measured, threshold, "<" if strict else "≤", ok, evidence=evidence, **options
    )


def equals(
    name: str, measured: float | None, expected: float, *, evidence: Evidence, **options: Any
) -> Criterion:
    """measured == expected (counts of violations: expected 0); `options` as for `at_least`."""
    ok = _finite(measured) and measured == expected
    return _check(name, measured, expected, "=", ok, evidence=evidence, **options)


def holds(
    name: str,
    ok: bool,
    *,
    measured: str,
    expectation: str,
    evidence: Evidence,
    description: str = "",
    critical: bool = True,
    section: str = "",
    timing: bool = False,
) -> Criterion:
    """A boolean fact (e.g. 'error message names the database') with the evidence behind it;
    `timing` when the fact is about latencies or rates the generator measured."""
    return Criterion(
        name=name,
        description=description,
        threshold=expectation,
        measured=measured,
        passed=bool(ok) and evidence.enough,
        evidence=evidence,
        critical=critical,
        section=section,
        timing=timing,
    )


def not_measurable(criterion: Criterion, reason: str) -> Criterion:
    """`criterion` not passed because it could not be judged against the service (`reason`)."""
    return replace(criterion, passed=False, not_measurable=reason)


def skipped(
    name: str,
    reason: str,
    *,
    evidence: Evidence,
    section: str = "",
    critical: bool = True,
    description: str = "",
) -> Criterion:
    """A criterion that could not be judged in this run (the reason is its measured text).

    Critical skips fail the run unless allowed by name (`allow_skips`).
    """
    return Criterion(
        name=name,
        description=description or reason,
        threshold="n/a",
        measured=reason,
        passed=False,
        evidence=evidence,
        critical=critical,
        section=section,
        skipped=True,
    )


def allow_skips(criteria: Iterable[Criterion], names: Iterable[str]) -> list[Criterion]:
    """The criteria with the skips the user named (`--allow-skip NAME`) marked as allowed."""
    allowed = set(names)
    return [
        replace(c, skip_allowed=True) if c.skipped and c.name in allowed else c for c in criteria
    ]


@dataclass(frozen=True)
class Tally:
    """Totals over a list of criteria."""

    total: int
    passed: int
    failed: int
    skipped: int
    critical_failed: int
    #: Critical criteria skipped without the user's --allow-skip: they fail the run.
    skipped_not_allowed: int = 0
    #: Failed criteria (critical or not) whose evidence fell short.
    insufficient: int = 0
    #: Failed criteria (critical or not) that could not be judged: the generator saturated.
    not_measurable: int = 0

    @property
    def pass_rate(self) -> float:
        """Passed over judged (skipped ones left out); 1.0 when nothing was judged."""
        judged = self.passed + self.failed
        return self.passed / judged if judged else 1.0

    @property
    def ok(self) -> bool:
        """No critical criterion failed and no critical one was skipped without permission."""
        return self.critical_failed == 0 and self.skipped_not_allowed == 0


def tally(criteria: list[Criterion]) -> Tally:
    """Count passed, failed, skipped, failed-critical and not-allowed-skip criteria."""
    failed = [c for c in criteria if c.failed]
    return Tally(
        total=len(criteria),
        passed=sum(1 for c in criteria if c.passed),
        failed=len(failed),
        skipped=sum(1 for c in criteria if c.skipped),
        critical_failed=sum(1 for c in failed if c.critical),
        skipped_not_allowed=sum(1 for c in criteria if c.skipped and c.blocks),
        insufficient=sum(1 for c in failed if c.insufficient),
        not_measurable=sum(1 for c in failed if c.not_measurable),
    )
