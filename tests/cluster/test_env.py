"""`cluster.env`: what each process of a run is configured with (pure, no Ray)."""

from __future__ import annotations

from pathlib import Path

from cluster.env import instance_env, swarm_auth_secret, tmws_env


class ProxyAll:
    """A nemesis stand-in that routes every instance's Redis through port 1."""

    def route(self, instance_id: str, env: dict[str, str]) -> dict[str, str]:
        assert env["TMWS_INSTANCE_ID"] == instance_id  # sees the settings built so far
        return {"TMWS_REDIS_URL": "redis://127.0.0.1:1/0"}


def _env(**kwargs: object) -> dict[str, str]:
    args: dict[str, object] = {
        "database_url": "postgresql://db",
        "redis_url": "redis://r",
        "state_dir": Path("/tmp/state"),
        "preset_env": {"TMWS_CACHE_MODE": "eventual", "TMWS_LOG": "preset"},
        "overrides": {"TMWS_LOG": "override"},
    }
    args.update(kwargs)
    base = {"TMWS_LOG": "base", "TMWS_DATABASE_URL": "ignored", "TMWS_KEEP": "1"}
    return instance_env(base, "run-inst-0", **args)  # type: ignore[arg-type]


def test_only_tmws_settings_are_passed_on() -> None:
    assert tmws_env({"TMWS_A": "1", "PATH": "/bin", "tmws_b": "2"}) == {"TMWS_A": "1"}


def test_later_sources_win() -> None:
    env = _env()
    assert env["TMWS_DATABASE_URL"] == "postgresql://db"  # the run's servers beat the base
    assert (env["TMWS_INSTANCE_ID"], env["TMWS_STATE_DIR"]) == ("run-inst-0", "/tmp/state")
    assert env["TMWS_CACHE_MODE"] == "eventual" and env["TMWS_KEEP"] == "1"
    assert env["TMWS_LOG"] == "override"
    assert env["TMWS_REDIS_URL"] == "redis://r"


def test_nemesis_routes_last() -> None:
    assert _env(nemesis=ProxyAll())["TMWS_REDIS_URL"] == "redis://127.0.0.1:1/0"


def test_swarms_sign_with_the_instances_secret() -> None:
    assert swarm_auth_secret({}, {}) is None
    assert swarm_auth_secret({"TMWS_AUTH_SECRET": ""}, {}) is None
    assert swarm_auth_secret({"TMWS_AUTH_SECRET": "base"}, {}) == "base"
    assert swarm_auth_secret({"TMWS_AUTH_SECRET": "base"}, {"TMWS_AUTH_SECRET": "o"}) == "o"
