"""What each process of a run is configured with: pure functions of the settings given.

The driver's environment is read once (`tmws_env`, by `ClusterRun`); everything below takes
that mapping as an argument, so an instance's settings are a function of the run's inputs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def tmws_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The TMWS_* settings of `environ` (the rest of the driver's environment is not passed on)."""
    return {k: v for k, v in environ.items() if k.startswith("TMWS_")}


def instance_env(
    base: Mapping[str, str],
    instance_id: str,
    *,
    database_url: str,
    redis_url: str,
    state_dir: Path,
    preset_env: Mapping[str, str],
    overrides: Mapping[str, str],
    nemesis: Any = None,
) -> dict[str, str]:
    """The TMWS_* settings one instance runs with.

    Later sources win: the run's base settings, the servers and identity the run assigns, the
    scale preset's, the experiment's overrides, and last the nemesis's proxied server URLs.
    """
    env = dict(base)
    env.update(
        {
            "TMWS_DATABASE_URL": database_url,
            "TMWS_REDIS_URL": redis_url,
            "TMWS_INSTANCE_ID": instance_id,
            "TMWS_STATE_DIR": str(state_dir),
        }
    )
    env.update(preset_env)
    env.update(overrides)
    if nemesis is not None:
        env.update(nemesis.route(instance_id, env))
    return env


def swarm_auth_secret(base: Mapping[str, str], overrides: Mapping[str, str]) -> str | None:
    """The secret agents sign their tokens with: the one the instances are given, if any."""
    return overrides.get("TMWS_AUTH_SECRET", base.get("TMWS_AUTH_SECRET") or None)
