"""Settings come from TMWS_* variables; malformed values fail naming the variable."""

from __future__ import annotations

import pytest

from service.config import ConfigError, Settings


def test_defaults_bind_loopback_and_size_the_pool_like_the_plan() -> None:
    settings = Settings.from_env({})
    assert settings.host == "127.0.0.1"
    assert (settings.database.pool_min, settings.database.pool_max) == (10, 30)
    assert settings.limits.max_connections_per_agent == 10
    assert settings.cache.mode == "strict"
    assert not settings.auth_enabled


def test_values_are_read_and_typed() -> None:
    settings = Settings.from_env(
        {
            "TMWS_PORT": "9001",
            "TMWS_CACHE_MODE": "eventual",
            "TMWS_AUTH_SECRET": "s3cret",
            "TMWS_VECTOR_INDEX": "ivfflat",
            "TMWS_CACHE_SKIP_INVALIDATION_PUBLISH": "true",
            "TMWS_ENABLE_TEST_PATTERNS": "true",
        }
    )
    assert settings.port == 9001
    assert settings.cache.mode == "eventual"
    assert settings.bugs.skip_publish is True
    assert settings.database.vector_index == "ivfflat"
    assert settings.auth_enabled


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"TMWS_PORT": "eighty"}, "TMWS_PORT"),
        ({"TMWS_CACHE_MODE": "sometimes"}, "TMWS_CACHE_MODE"),
        ({"TMWS_POOL_MIN": "40"}, "TMWS_POOL_MIN"),
        ({"TMWS_RATE_PER_S": "-1"}, "TMWS_RATE_PER_S"),
        ({"TMWS_CACHE_SKIP_INVALIDATION_PUBLISH": "maybe"}, "TMWS_CACHE_SKIP_INVALIDATION_PUBLISH"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)
