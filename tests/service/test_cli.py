"""The CLI reports bad input in one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_tmws(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_bad_setting_is_one_line_and_exit_2() -> None:
    done = run_tmws("infra", "status", env={"TMWS_PORT": "x", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert done.stderr.strip() == "tmws: error: TMWS_PORT='x' is not an integer"


def test_token_without_secret_is_refused_clearly() -> None:
    done = run_tmws("token", "agent-1", env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    assert "TMWS_AUTH_SECRET is not set" in done.stderr
    assert "Traceback" not in done.stderr


def test_infra_status_without_servers(tmp_path: Path) -> None:
    done = run_tmws("infra", "status", "--state-dir", str(tmp_path), env={"PATH": "/usr/bin:/bin"})
    assert done.returncode == 1
    assert "no embedded infrastructure" in done.stdout
