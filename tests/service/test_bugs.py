"""Injected bugs: parsed from TMWS_INJECT_BUGS, off by default, refused without test patterns."""

from __future__ import annotations

import pytest

from service.bugs import KNOWN_BUGS, BugSpecError, InjectedBugs
from service.config import ConfigError, Settings

ON = {"TMWS_ENABLE_TEST_PATTERNS": "true"}


def test_default_is_no_bug() -> None:
    assert not InjectedBugs().any
    assert not Settings.from_env({}).bugs.any
    assert str(InjectedBugs()) == "none"


def test_every_name_parses_and_spells_back() -> None:
    text = (
        "skip-publish, skip-generation-check,no-flush-on-reconnect,late-invalidation:250,"
        "shared-l2-across-namespaces,ack-before-commit,no-cancel-on-timeout,pool-leak:3"
    )
    bugs = InjectedBugs.parse(text)
    assert bugs.skip_publish and bugs.skip_generation_check and bugs.no_flush_on_reconnect
    assert bugs.late_invalidation_ms == 250 and bugs.shared_l2_across_namespaces
    assert bugs.ack_before_commit_ms == 300 and bugs.no_cancel_on_timeout
    assert bugs.pool_leak_every == 3
    assert len(bugs.names()) == len(KNOWN_BUGS)
    assert InjectedBugs.parse(str(bugs)) == bugs


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("skip-everything", "unknown injected bug 'skip-everything'; known: skip-publish"),
        ("late-invalidation", "needs a number"),
        ("late-invalidation:soon", "not an integer"),
        ("pool-leak:0", "must be >= 1"),
        ("skip-publish:3", "takes no argument"),
    ],
)
def test_bad_specs_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(BugSpecError, match=message):
        InjectedBugs.parse(text)


def test_settings_read_bugs_and_the_old_alias() -> None:
    settings = Settings.from_env({**ON, "TMWS_INJECT_BUGS": "pool-leak:7,late-invalidation:50"})
    assert settings.bugs == InjectedBugs(pool_leak_every=7, late_invalidation_ms=50)
    alias = Settings.from_env({**ON, "TMWS_CACHE_SKIP_INVALIDATION_PUBLISH": "true"})
    assert alias.bugs == InjectedBugs(skip_publish=True)


def test_bugs_are_refused_without_test_patterns_in_one_line() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TMWS_INJECT_BUGS": "skip-publish"})
    assert "TMWS_ENABLE_TEST_PATTERNS=true" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="TMWS_ENABLE_TEST_PATTERNS"):
        Settings.from_env({"TMWS_CACHE_SKIP_INVALIDATION_PUBLISH": "true"})
    with pytest.raises(ConfigError, match=r"TMWS_INJECT_BUGS='nope'.*known: skip-publish"):
        Settings.from_env({**ON, "TMWS_INJECT_BUGS": "nope"})
