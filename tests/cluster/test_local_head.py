"""The local Ray head (`scripts/ray_local.sh`): loopback, token auth, the project's Python, and a
`down` that leaves no process of its session — stopped by its own pid, never `ray stop`."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import local_head
from cluster.local_head import HeadConfig, head_command, head_env, mentions, temp_dir_for

ROOT = Path(__file__).resolve().parents[2]


def test_command_binds_loopback_and_blocks_in_its_own_temp_dir(tmp_path: Path) -> None:
    config = HeadConfig(root=tmp_path, gcs_port=7001, dashboard_port=7002, num_cpus=3)
    command = head_command(config, client_port=7003, agent_port=7004)
    assert command[:4] == [str(tmp_path / ".venv" / "bin" / "ray"), "start", "--head", "--block"]
    for flag in (
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        "--port=7001",
        "--dashboard-port=7002",
        "--ray-client-server-port=7003",
        "--dashboard-agent-listen-port=7004",
        f"--temp-dir={temp_dir_for(tmp_path)}",
        "--num-cpus=3",
    ):
        assert flag in command
    assert not any("0.0.0.0" in part for part in command)


def test_env_puts_the_virtualenv_first_and_turns_token_auth_on(tmp_path: Path) -> None:
    env = head_env(HeadConfig(root=tmp_path), {"PATH": "/usr/bin", "PYTHONHOME": "/x"})
    assert env["PATH"].split(os.pathsep)[0] == str(tmp_path / ".venv" / "bin")
    assert env["RAY_AUTH_MODE"] == "token"
    assert env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    assert env["HF_HUB_OFFLINE"] == "1"
    assert "PYTHONHOME" not in env


def test_temp_dirs_are_per_checkout_and_short() -> None:
    a, b = temp_dir_for(Path("/work/a"), uid=0), temp_dir_for(Path("/work/b"), uid=0)
    assert a != b
    # Ray puts sockets at <temp>/session_<date>_<pid>/sockets/plasma_store: stay under 107 bytes.
    assert (
        len(str(a)) + len("/session_2026-12-01_20-16-52_165424_4194304/sockets/plasma_store") < 107
    )
    assert mentions(["raylet", f"--session-dir={a}/session_x"], a)
    assert not mentions(["raylet", f"--session-dir={b}/session_x"], a)


def test_default_cpus_fit_the_local_presets() -> None:
    assert local_head.default_num_cpus() >= 4


def run_cli(
    *args: str, root: Path = ROOT, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cluster.local_head", *args, "--root", str(root)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_taken_port_is_refused_with_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = run_cli("up", "--dashboard-port", str(port), root=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        f"ray_local: port {port} (dashboard) is taken on 127.0.0.1 (another Ray?): "
        "choose another with --port / --dashboard-port"
    )


def test_bad_usage_exits_2() -> None:
    done = subprocess.run(
        ["bash", "scripts/ray_local.sh", "start"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2 and "invalid choice: 'start'" in done.stderr


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A checkout of its own (state, temp dir) that uses this project's virtualenv."""
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    yield tmp_path
    run_cli("down", root=tmp_path)  # whatever the test did, nothing stays up


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_up_submit_down_leaves_nothing(checkout: Path) -> None:
    gcs, dashboard = local_head.free_port(), local_head.free_port()
    ports = ["--port", str(gcs), "--dashboard-port", str(dashboard), "--num-cpus", "2"]
    up = run_cli("up", *ports, root=checkout)
    assert up.returncode == 0, up.stderr + up.stdout
    state = local_head.read_state(HeadConfig(root=checkout))
    assert state is not None and local_head.alive(state.pid)
    assert run_cli("status", root=checkout).returncode == 0

    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    job = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "ray"),
            "job",
            "submit",
            "--address",
            f"http://127.0.0.1:{dashboard}",
            "--",
            "python",
            "-c",
            "import sys; print('JOB-PYTHON', sys.executable)",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert job.returncode == 0, job.stderr
    # The job's `python` is the checkout's virtualenv: the head put its bin/ first on PATH.
    assert f"JOB-PYTHON {checkout / '.venv' / 'bin' / 'python'}" in job.stdout

    # Without the token the Jobs API refuses (token authentication is on).
    unauthenticated = subprocess.run(
        [
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            f"http://127.0.0.1:{dashboard}/api/jobs/",
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert unauthenticated.stdout == "401"

    tree = local_head.process_tree(state.pid)
    assert len(tree) > 5
    down = run_cli("down", root=checkout)
    assert down.returncode == 0, down.stderr
    assert not [p.pid for p in tree if local_head.alive(p.pid)]
    assert local_head.session_processes(Path(state.temp_dir)) == []
    assert run_cli("status", root=checkout).returncode == 1
