"""A local Ray head for `ray job submit`, on 127.0.0.1, from the project's virtualenv; stopped by pid.

    scripts/ray_local.sh up [--num-cpus N]    # python -m cluster.local_head up
    scripts/ray_local.sh status
    scripts/ray_local.sh down

Why each choice:
- The head is started with the virtualenv's `bin/` first on PATH: a job's entrypoint runs
  `python` from the head's PATH, so a head started elsewhere runs jobs without the project's
  dependencies (`cluster.deps` then says which).
- Everything binds loopback (`--node-ip-address 127.0.0.1`, dashboard on 127.0.0.1) and token
  authentication is on (`RAY_AUTH_MODE=token`, the token in `~/.ray/auth_token`).
- `ray start --head --block` runs in its own session; its pid is recorded. `down` stops running
  jobs through the Jobs API, then sends SIGTERM to that pid (the blocking `ray start` stops every
  process it started), then stops whatever of its process tree or its own temp dir is left.
  Never `ray stop`: that kills every Ray of this user on the machine.
- The temp dir is this checkout's own (`/tmp/tmws-ray-<uid>-<hash>`, short enough for Unix socket
  paths), so its processes are told apart from other Rays by their command lines.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil

from cluster.topology import PROJECT_ROOT, load_preset

DEFAULT_GCS_PORT = 6390  # not 6379: that is Redis's port (docker compose publishes one there)
DEFAULT_DASHBOARD_PORT = 8265
READY_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 60.0
#: How long a stopped job's driver may take to tear down (servers, reports) before SIGKILL.
JOB_STOP_WAIT_S = 30
OBJECT_STORE_BYTES = 1_000_000_000


@dataclass(frozen=True)
class HeadConfig:
    """Where and how the head runs."""

    root: Path
    gcs_port: int = DEFAULT_GCS_PORT
    dashboard_port: int = DEFAULT_DASHBOARD_PORT
    num_cpus: int = 4

    @property
    def venv_bin(self) -> Path:
        return self.root / ".venv" / "bin"

    @property
    def state_file(self) -> Path:
        return self.root / ".tmws" / "ray-local" / "head.json"

    @property
    def log_file(self) -> Path:
        return self.state_file.with_name("head.log")

    @property
    def temp_dir(self) -> Path:
        return temp_dir_for(self.root)

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"


@dataclass(frozen=True)
class HeadState:
    """What `up` recorded: enough for `status` and `down` in another process."""

    pid: int
    temp_dir: str
    dashboard_url: str
    gcs_address: str
    started_at: float


def temp_dir_for(root: Path, uid: int | None = None) -> Path:
    """This checkout's Ray temp dir: unique per checkout and user, short (socket paths ≤ 107)."""
    digest = hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]
    return Path("/tmp") / f"tmws-ray-{os.getuid() if uid is None else uid}-{digest}"


def default_num_cpus() -> int:
    """Logical CPUs for the head: enough for the ci and laptop placement groups (Ray schedules
    by these, not by physical cores), and at least the machine's."""
    wanted = [load_preset(name).local_num_cpus or 0 for name in ("ci", "laptop")]
    return max([os.cpu_count() or 1, *wanted])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def head_env(config: HeadConfig, base: Mapping[str, str]) -> dict[str, str]:
    """The head's environment: the virtualenv first on PATH, loopback, token auth, offline."""
    env = dict(base)
    env["PATH"] = f"{config.venv_bin}{os.pathsep}{base.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(config.venv_bin.parent)
    env.pop("PYTHONHOME", None)
    env.update(
        {
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_JOB_STOP_WAIT_TIME_S": str(JOB_STOP_WAIT_S),
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
    )
    return env


def head_command(config: HeadConfig, client_port: int, agent_port: int) -> list[str]:
    """`ray start --head --block` bound to loopback with this checkout's temp dir."""
    return [
        str(config.venv_bin / "ray"),
        "start",
        "--head",
        "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={config.gcs_port}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={config.dashboard_port}",
        # Fixed defaults (10001, 52365) would collide with another Ray on this machine.
        f"--ray-client-server-port={client_port}",
        f"--dashboard-agent-listen-port={agent_port}",
        f"--temp-dir={config.temp_dir}",
        f"--num-cpus={config.num_cpus}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
    ]


def read_state(config: HeadConfig) -> HeadState | None:
    try:
        return HeadState(**json.loads(config.state_file.read_text()))
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


def write_state(config: HeadConfig, state: HeadState) -> None:
    config.state_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2))
    os.replace(tmp, config.state_file)


def alive(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def mentions(cmdline: Iterable[str], temp_dir: Path) -> bool:
    """True when a command line refers to `temp_dir` (Ray passes it, or paths under it, to every
    process of the session)."""
    needle = str(temp_dir)
    return any(needle in part for part in cmdline)


def session_processes(temp_dir: Path) -> list[psutil.Process]:
    """This user's processes whose command line refers to this checkout's Ray temp dir."""
    found = []
    for proc in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if proc.info["uids"] is None or proc.info["uids"].real != os.getuid():
                continue
            if proc.pid != os.getpid() and mentions(proc.info["cmdline"] or [], temp_dir):
                found.append(proc)
        except psutil.Error:
            continue
    return found


def process_tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def token_ready(env: Mapping[str, str]) -> None:
    """Token auth needs a token before the head starts: create ~/.ray/auth_token if missing."""
    subprocess.run(
        [str(Path(env["VIRTUAL_ENV"]) / "bin" / "ray"), "get-auth-token", "--generate"],
        env=dict(env),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )


def jobs_client(url: str) -> object:
    """A Jobs API client for the head (it sends the token: RAY_AUTH_MODE=token is set)."""
    os.environ["RAY_AUTH_MODE"] = "token"
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(url)


def wait_ready(config: HeadConfig, pid: int, timeout_s: float = READY_TIMEOUT_S) -> str | None:
    """None once the Jobs API answers; else why not (the head died, or the bound passed)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive(pid):
            return "the head exited"
        if port_taken(config.dashboard_port):
            try:
                jobs_client(config.dashboard_url).list_jobs()  # type: ignore[attr-defined]
                return None
            except Exception:  # the dashboard answers before its job module is up
                pass
        time.sleep(0.5)  # polling a process we do not control, bounded by the deadline
    return f"the Jobs API did not answer within {timeout_s:.0f}s"


def up(config: HeadConfig) -> int:
    """Start the head unless this checkout's is already up; print how to submit a job."""
    state = read_state(config)
    if state is not None and alive(state.pid):
        print(f"ray_local: already up (pid {state.pid}), dashboard {state.dashboard_url}")
        return 0
    for port, what in ((config.gcs_port, "GCS"), (config.dashboard_port, "dashboard")):
        if port_taken(port):
            print(
                f"ray_local: port {port} ({what}) is taken on 127.0.0.1 (another Ray?): "
                f"choose another with --port / --dashboard-port",
                file=sys.stderr,
            )
            return 2
    if not (config.venv_bin / "ray").exists():
        print(f"ray_local: no {config.venv_bin / 'ray'}: create .venv first", file=sys.stderr)
        return 2
    env = head_env(config, os.environ)
    token_ready(env)
    config.log_file.parent.mkdir(parents=True, exist_ok=True)
    command = head_command(config, free_port(), free_port())
    with config.log_file.open("ab") as log:
        proc = subprocess.Popen(
            command,
            cwd=config.root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: our shell's Ctrl-C does not reach it
        )
    state = HeadState(
        proc.pid,
        str(config.temp_dir),
        config.dashboard_url,
        f"127.0.0.1:{config.gcs_port}",
        time.time(),
    )
    write_state(config, state)
    problem = wait_ready(config, proc.pid)
    if problem is not None:
        print(f"ray_local: {problem}; log: {config.log_file}", file=sys.stderr)
        stop(config, state)
        return 1
    print(
        f"ray_local: Ray head up (pid {proc.pid}), {config.num_cpus} logical CPUs, python "
        f"{config.venv_bin / 'python'}\n"
        f"  dashboard  {config.dashboard_url}  (token auth on; RAY_AUTH_MODE=token for the CLI)\n"
        f"  submit     RAY_AUTH_MODE=token .venv/bin/ray job submit --address "
        f"{config.dashboard_url} --working-dir . -- python experiments/coherency.py --scale ci "
        f'--out "$PWD/test-reports/integration/coherency"\n'
        f"  stop       scripts/ray_local.sh down"
    )
    return 0


def stop_jobs(url: str, timeout_s: float) -> None:
    """Stop running jobs first so their drivers tear down what they started."""
    try:
        client = jobs_client(url)
        running = [
            j.submission_id
            for j in client.list_jobs()  # type: ignore[attr-defined]
            if not j.status.is_terminal() and j.submission_id
        ]
        for job_id in running:
            client.stop_job(job_id)  # type: ignore[attr-defined]
        deadline = time.monotonic() + timeout_s
        while running and time.monotonic() < deadline:
            running = [
                j
                for j in running
                if not client.get_job_status(j).is_terminal()  # type: ignore[attr-defined]
            ]
            time.sleep(0.5)  # waiting on the jobs' own teardown, bounded
    except Exception as exc:  # the head may already be half down: go on and stop it
        print(f"ray_local: could not stop jobs through {url}: {exc}", file=sys.stderr)


def terminate(procs: list[psutil.Process], timeout_s: float) -> list[psutil.Process]:
    """SIGTERM, wait, SIGKILL what is left; returns what still runs after that."""
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.terminate()
    _, left = psutil.wait_procs(procs, timeout=timeout_s)
    for proc in left:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    _, left = psutil.wait_procs(left, timeout=5)
    return [p for p in left if alive(p.pid)]


def stop(config: HeadConfig, state: HeadState | None) -> list[psutil.Process]:
    """Stop the recorded head and everything of its session; returns processes still alive."""
    temp_dir = Path(state.temp_dir) if state else config.temp_dir
    if state is not None and alive(state.pid):
        stop_jobs(state.dashboard_url, JOB_STOP_WAIT_S + 10)
        tree = process_tree(state.pid)
        # The blocking `ray start` handles SIGTERM by stopping every process it started.
        with contextlib.suppress(psutil.Error):
            psutil.Process(state.pid).terminate()
        _, left = psutil.wait_procs(tree, timeout=STOP_TIMEOUT_S)
        rest = [p for p in left if alive(p.pid)]
    else:
        rest = []
    # Whatever outlived its parent: still in the recorded tree, or naming our temp dir.
    pids = {p.pid for p in rest}
    rest += [p for p in session_processes(temp_dir) if p.pid not in pids]
    return terminate(rest, 10) if rest else []


def down(config: HeadConfig) -> int:
    state = read_state(config)
    if state is None and not session_processes(config.temp_dir):
        print("ray_local: no local Ray head of this checkout is running")
        return 0
    left = stop(config, state)
    if left:
        print(f"ray_local: still running: {[(p.pid, p.name()) for p in left]}", file=sys.stderr)
        return 1
    with contextlib.suppress(FileNotFoundError):
        config.state_file.unlink()
    print("ray_local: Ray head stopped, no process of its session left")
    return 0


def status(config: HeadConfig) -> int:
    """Exit 0 when up (prints the dashboard, the session's processes and jobs), else 1."""
    state = read_state(config)
    if state is None or not alive(state.pid):
        print("ray_local: down")
        return 1
    procs = session_processes(Path(state.temp_dir))
    print(
        f"ray_local: up (pid {state.pid}), dashboard {state.dashboard_url}, "
        f"GCS {state.gcs_address}, {len(procs)} processes in {state.temp_dir}"
    )
    with contextlib.suppress(Exception):  # the dashboard may be starting or stopping
        for job in jobs_client(state.dashboard_url).list_jobs():  # type: ignore[attr-defined]
            print(f"  job {job.submission_id}: {job.status} {job.entrypoint}")
    return 0


def parse_args(argv: list[str] | None) -> tuple[str, HeadConfig]:
    parser = argparse.ArgumentParser(prog="scripts/ray_local.sh", description=__doc__)
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--port", type=int, default=DEFAULT_GCS_PORT, help="GCS port")
    parser.add_argument("--dashboard-port", type=int, default=DEFAULT_DASHBOARD_PORT)
    parser.add_argument("--num-cpus", type=int, default=None, help="logical CPUs of the head")
    parser.add_argument(
        "--root", type=Path, default=PROJECT_ROOT, help="checkout whose .venv and .tmws to use"
    )
    args = parser.parse_args(argv)
    if args.num_cpus is not None and args.num_cpus < 1:
        parser.error("--num-cpus must be >= 1")
    config = HeadConfig(
        root=args.root.resolve(),
        gcs_port=args.port,
        dashboard_port=args.dashboard_port,
        num_cpus=args.num_cpus or default_num_cpus(),
    )
    return args.command, config


def main(argv: list[str] | None = None) -> int:
    command, config = parse_args(argv)
    return {"up": up, "down": down, "status": status}[command](config)


if __name__ == "__main__":
    sys.exit(main())
