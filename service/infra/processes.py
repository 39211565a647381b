"""Processes of the embedded servers: is a pid really ours, and pausing it (SIGSTOP/SIGCONT).

A pid file outlives its process, and pids are reused: before signalling a pid we check that it
is the server we started (its executable name and its data folder or port), so a stale pid
file can never make us stop or pause someone else's process.

Paused pids are recorded in `paused.json` in the state folder, so a resume (or a stop, which
resumes first: a stopped process only acts on SIGTERM once continued) works from any process,
even after the one that paused them died.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import psutil

PAUSED_FILE = "paused.json"


def pid_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie child of ours is reaped)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); reap it if it is ours.
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False


def is_server(pid: int, name: str, markers: tuple[str, ...]) -> bool:
    """`pid` runs executable `name` and its command line or cwd shows one of `markers`."""
    try:
        proc = psutil.Process(pid)
        if name not in proc.name() and not any(name in part for part in proc.cmdline()[:1]):
            return False
        seen = " ".join(proc.cmdline())
        try:
            seen += " " + proc.cwd()
        except psutil.AccessDenied:
            pass
        return any(marker in seen for marker in markers)
    except (psutil.NoSuchProcess, psutil.ZombieProcess, psutil.AccessDenied):
        # Cannot tell (or gone): never treat it as ours.
        return False


def with_children(pid: int) -> list[int]:
    """`pid` then every descendant (PostgreSQL: the postmaster, then its backends and workers)."""
    try:
        return [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
    except psutil.Error:
        return [pid]


def signal_all(pids: list[int], sig: signal.Signals) -> list[int]:
    """Send `sig` to each pid that still exists; the ones signalled."""
    sent = []
    for pid in pids:
        try:
            os.kill(pid, sig)
            sent.append(pid)
        except ProcessLookupError:
            continue
    return sent


def read_paused(state_dir: Path) -> dict[str, list[int]]:
    try:
        raw = json.loads((state_dir / PAUSED_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): [int(p) for p in v] for k, v in raw.items()}


def record_paused(state_dir: Path, server: str, pids: list[int] | None) -> None:
    """Remember (or, with None, forget) which pids of `server` are stopped."""
    paused = read_paused(state_dir)
    if pids:
        paused[server] = pids
    else:
        paused.pop(server, None)
    target = state_dir / PAUSED_FILE
    if not paused:
        target.unlink(missing_ok=True)
        return
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(paused))
    os.replace(tmp, target)


def process_identity(pid: int) -> float | None:
    """The start time of `pid` (tells a live owner from a reused pid), or None if gone."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
