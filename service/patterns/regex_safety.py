"""Reject trigger regexes prone to catastrophic backtracking, before they ever see a query.

Two checks. A static walk of the parsed regex flags an unbounded repeat whose body can itself
repeat without bound ((a+)+, (a*)*, (\\w+\\s?)+) or whose body is an alternation with branches
that can start on the same character ((a|a)*, (a|ab)+). A timed probe then matches inputs built
from the regex's own literals, with growing length, and rejects a regex whose time explodes.
The probe runs inline with bounded input sizes, not in a thread with a timeout: CPython's `re`
holds the GIL while matching, so a watchdog thread could not interrupt it anyway.
"""

from __future__ import annotations

import re
import time
from typing import Any

try:  # Python 3.11+: the parser lives in re._parser; sre_parse is its deprecated alias.
    from re import _constants as sre_constants  # type: ignore[attr-defined]
    from re import _parser as sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older interpreters
    import sre_constants  # type: ignore[no-redef]
    import sre_parse  # type: ignore[no-redef]

_REPEATS = (sre_constants.MAX_REPEAT, sre_constants.MIN_REPEAT, sre_constants.POSSESSIVE_REPEAT)
_MAXREPEAT = sre_constants.MAXREPEAT
#: A repeat allowing more than this many iterations counts as unbounded for nesting purposes.
_BIG_REPEAT = 10
_PROBE_LENGTHS = (10, 16, 22, 28)
#: A probe match slower than this is treated as exponential blow-up outright.
_PROBE_LIMIT_S = 0.05
#: Above this, a reading is not noise; growing more than _PROBE_GROWTH x per 6 extra characters
#: is exponential (linear regexes grow ~1.5x, (a|aa)+ ~18x, (a+)+ ~64x).
_PROBE_NOISE_S = 0.001
_PROBE_GROWTH = 8.0
_ANY = "<any>"
_EMPTY = "<empty>"


class UnsafeRegex(ValueError):
    """The regex can backtrack catastrophically; the message says why."""


def check_regex(pattern: str, flags: int = re.IGNORECASE) -> re.Pattern[str]:
    """Compile `pattern`, raising `re.error` or `UnsafeRegex`; returns the compiled regex."""
    compiled = re.compile(pattern, flags)
    reason = _static_reason(sre_parse.parse(pattern, flags))
    if reason:
        raise UnsafeRegex(f"catastrophic backtracking risk: {reason}")
    _probe(compiled, pattern)
    return compiled


def _static_reason(parsed: Any) -> str | None:
    for op, av in parsed:
        if op in _REPEATS:
            _low, high, body = av
            if high == _MAXREPEAT or high > _BIG_REPEAT:
                if _contains_unbounded_repeat(body):
                    return "nested quantifier (a repeated group contains another repeat)"
                if _overlapping_branches(body):
                    return "repeated alternation whose branches overlap"
            reason = _static_reason(body)
        elif op is sre_constants.SUBPATTERN:
            reason = _static_reason(av[-1])
        elif op is sre_constants.BRANCH:
            reason = next(filter(None, (_static_reason(b) for b in av[1])), None)
        else:
            reason = None
        if reason:
            return reason
    return None


def _contains_unbounded_repeat(parsed: Any) -> bool:
    for op, av in parsed:
        if op in _REPEATS:
            if av[1] == _MAXREPEAT or av[1] > _BIG_REPEAT or _contains_unbounded_repeat(av[2]):
                return True
        elif op is sre_constants.SUBPATTERN:
            if _contains_unbounded_repeat(av[-1]):
                return True
        elif op is sre_constants.BRANCH:
            if any(_contains_unbounded_repeat(b) for b in av[1]):
                return True
    return False


def _overlapping_branches(parsed: Any) -> bool:
    """True if the sequence holds an alternation whose branches can start alike."""
    for op, av in parsed:
        if op is sre_constants.SUBPATTERN and _overlapping_branches(av[-1]):
            return True
        if op is sre_constants.BRANCH:
            seen: set[str] = set()
            for branch in av[1]:
                # The parser factors common prefixes out ("a|a" -> "a(?:|)"): two empty
                # branches are two identical alternatives.
                first = _first_chars(branch) if branch else {_EMPTY}
                if _ANY in first or (seen & first) or _ANY in seen:
                    return True
                seen |= first
    return False


def _first_chars(parsed: Any) -> set[str]:
    """Characters a match of `parsed` may start with (`<any>` when a class or wildcard)."""
    for op, av in parsed:
        if op is sre_constants.LITERAL:
            return {chr(av).casefold()}
        if op is sre_constants.SUBPATTERN:
            return _first_chars(av[-1])
        if op is sre_constants.BRANCH:
            return set().union(*(_first_chars(b) for b in av[1]))
        if op in _REPEATS:
            inner = _first_chars(av[2])
            return inner if av[0] > 0 else inner | {_ANY}
        if op in (sre_constants.AT,):
            continue
        return {_ANY}
    return {_ANY}


def _probe(compiled: re.Pattern[str], pattern: str) -> None:
    alphabet = sorted({c for c in re.sub(r"\\.", "", pattern) if c.isalnum() or c == " "} | {"a"})
    for unit in [*alphabet, "ab ", "a1"]:
        previous = None
        for length in _PROBE_LENGTHS:
            elapsed = _time_search(compiled, unit * length + "\x00!")
            exploding = (
                previous is not None
                and elapsed > _PROBE_NOISE_S
                and elapsed / previous > _PROBE_GROWTH
            )
            if elapsed > _PROBE_LIMIT_S or exploding:
                raise UnsafeRegex(
                    f"catastrophic backtracking: matching {length} x {unit!r} took "
                    f"{elapsed * 1000:.1f} ms (growing {elapsed / (previous or elapsed):.0f}x)"
                )
            previous = max(elapsed, 1e-7)


def _time_search(compiled: re.Pattern[str], text: str) -> float:
    """Seconds for one search; a slow reading is re-measured so a scheduler hiccup is no verdict."""
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        compiled.search(text)
        best = min(best, time.perf_counter() - started)
        if best <= _PROBE_NOISE_S:
            break
    return best
