"""Leak check: the processes a run started and left alive."""

from __future__ import annotations

import psutil

#: Ray's pooled workers waiting for a task: a Ray the run reused (not started) keeps them.
RAY_IDLE_WORKER = "ray::IDLE"


def child_processes() -> set[int]:
    """Pids of every live descendant of this process."""
    return {p.pid for p in psutil.Process().children(recursive=True)}


def leaked_processes(
    before: set[int], timeout_s: float = 30.0, *, reused_ray: bool = False
) -> list[psutil.Process]:
    """Descendants started since `before` that are still alive after waiting up to `timeout_s`.

    With `reused_ray` (Ray was already up when the run began, e.g. one Ray shared by a test
    session), Ray's idle pooled workers belong to that Ray, not to the run: they are not leaks.
    """
    new = [
        p
        for p in psutil.Process().children(recursive=True)
        if p.pid not in before and not (reused_ray and _name(p) == RAY_IDLE_WORKER)
    ]
    _, alive = psutil.wait_procs(new, timeout=timeout_s)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.Error:  # gone meanwhile
        return ""
