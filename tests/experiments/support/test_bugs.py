"""--inject-bug: parsed and checked before anything starts, turned into instance settings."""

from __future__ import annotations

import argparse

import pytest

from experiments.support.bugs import add_bug_argument, bug_env, injected_bugs


def _args(*argv: str, broken_cache: bool = False) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_bug_argument(parser)
    args = parser.parse_args(argv)
    args.broken_cache = broken_cache
    return args


def test_repeatable_bugs_with_arguments_become_instance_settings() -> None:
    bugs = injected_bugs(_args("--inject-bug", "pool-leak:3", "--inject-bug", "skip-publish"))
    assert bugs == ["pool-leak:3", "skip-publish"]
    assert bug_env(bugs) == {
        "TMWS_INJECT_BUGS": "pool-leak:3,skip-publish",
        "TMWS_ENABLE_TEST_PATTERNS": "true",
    }


def test_broken_cache_is_skip_publish() -> None:
    assert injected_bugs(_args(broken_cache=True)) == ["skip-publish"]


def test_no_bug_means_no_settings() -> None:
    assert bug_env(injected_bugs(_args())) == {}


@pytest.mark.parametrize(
    ("value", "message"),
    [("no-such-bug", "unknown injected bug"), ("late-invalidation", "needs a number")],
)
def test_bad_bug_is_a_usage_error(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        injected_bugs(_args("--inject-bug", value))
