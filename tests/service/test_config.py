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
            "TMWS_AUTH_SECRET": "a-secret-of-at-least-thirty-two-bytes",
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
        ({"TMWS_TORCH_THREADS": "0"}, "TMWS_TORCH_THREADS"),
        ({"TMWS_TORCH_THREADS": "two"}, "TMWS_TORCH_THREADS"),
        ({"TMWS_EMBED_MAX_BATCH": "0"}, "TMWS_EMBED_MAX_BATCH"),
        ({"TMWS_EMBED_CACHE_SIZE": "-5"}, "TMWS_EMBED_CACHE_SIZE"),
        ({"TMWS_EMBED_BACKEND": "tensorflow"}, "TMWS_EMBED_BACKEND"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        Settings.from_env(env)


def test_embedding_settings_are_read_from_the_environment() -> None:
    default = Settings.from_env({}).embedding
    assert (default.torch_threads, default.cache_size, default.max_batch) == (1, 4096, 64)
    settings = Settings.from_env(
        {"TMWS_TORCH_THREADS": "2", "TMWS_EMBED_CACHE_SIZE": "0", "TMWS_EMBED_MAX_BATCH": "8"}
    ).embedding
    assert (settings.torch_threads, settings.cache_size, settings.max_batch) == (2, 0, 8)
    assert default.backend == "onnx"
    assert Settings.from_env({"TMWS_EMBED_BACKEND": "torch"}).embedding.backend == "torch"
    assert not Settings.from_env({}).record_waits_on_hits
    assert Settings.from_env({"TMWS_RECORD_WAITS_ON_HITS": "true"}).record_waits_on_hits


def test_short_auth_secret_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({"TMWS_AUTH_SECRET": "abc"})
    assert str(info.value) == (
        "TMWS_AUTH_SECRET is 3 bytes; use at least 32 (e.g. the output of `openssl rand -hex 32`)"
    )
    assert Settings.from_env({"TMWS_AUTH_SECRET": "x" * 32}).auth_enabled


def test_limit_and_security_settings() -> None:
    settings = Settings.from_env(
        {
            "TMWS_MAX_BATCH": "7",
            "TMWS_MAX_REPLY_BYTES": "65536",
            "TMWS_MAX_JSON_DEPTH": "16",
            "TMWS_MAX_CONNECTIONS": "9",
            "TMWS_AGENT_RATE_PER_S": "5",
            "TMWS_ALLOWED_ORIGINS": "https://app.example, http://localhost:*",
            "TMWS_ADMIN_AGENTS": "ops-1,ops-2",
        }
    )
    limits = settings.limits
    assert (limits.max_batch, limits.max_reply_bytes, limits.max_json_depth) == (7, 65536, 16)
    assert (limits.max_connections, limits.agent_rate_per_s) == (9, 5.0)
    assert settings.security.allowed_origins == ("https://app.example", "http://localhost:*")
    assert settings.security.admin_agents == ("ops-1", "ops-2")
    assert Settings.from_env({}).security.admin_agents is None  # unset differs from empty
    assert Settings.from_env({"TMWS_ADMIN_AGENTS": ""}).security.admin_agents == ()
    with pytest.raises(ConfigError, match="TMWS_MAX_BATCH"):
        Settings.from_env({"TMWS_MAX_BATCH": "0"})
