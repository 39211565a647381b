"""`--inject-bug NAME[:ARG]`: run every service instance with a deliberate defect (service/bugs.py),
the negative control that proves an experiment's criteria can fail.

The option sets `TMWS_INJECT_BUGS` and `TMWS_ENABLE_TEST_PATTERNS=true` (the service refuses bugs
without it) on every instance. `--broken-cache` (the flagship's older flag) is `skip-publish`.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from service.bugs import KNOWN_BUGS, InjectedBugs


def add_bug_argument(parser: argparse.ArgumentParser) -> None:
    """The repeatable --inject-bug option."""
    parser.add_argument(
        "--inject-bug",
        action="append",
        default=[],
        metavar="NAME[:ARG]",
        help="negative control: run every instance with this deliberate defect (repeatable; "
        f"{', '.join(KNOWN_BUGS)}); the run must then fail",
    )


def injected_bugs(args: argparse.Namespace) -> list[str]:
    """The bugs asked for, checked: an unknown name is a usage error (`ValueError`, exit 2)
    before anything starts."""
    bugs = list(getattr(args, "inject_bug", None) or [])
    if getattr(args, "broken_cache", False):
        bugs.append("skip-publish")
    InjectedBugs.parse(",".join(bugs))
    return bugs


def bug_env(bugs: Sequence[str]) -> dict[str, str]:
    """Instance settings that switch `bugs` on (none: no settings)."""
    if not bugs:
        return {}
    return {"TMWS_INJECT_BUGS": ",".join(bugs), "TMWS_ENABLE_TEST_PATTERNS": "true"}
