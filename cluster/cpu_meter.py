"""CPU time of processes and threads, for the capacity measurements (psutil; no Ray, no service).

CPU time, not wall time, is what the capacity model divides by requests: on a shared machine a
busy neighbour stretches wall time far more than it stretches the CPU a request needs. What
the neighbours used is measured too (`Contention`) and printed with the numbers.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence

import psutil


def thread_times(pid: int) -> dict[int, float]:
    """CPU seconds of every thread of a process, by thread id."""
    return {t.id: t.user_time + t.system_time for t in psutil.Process(pid).threads()}


def split_threads(times: dict[int, float], loop_tid: int) -> tuple[float, float]:
    """(the event-loop thread, every other thread) from `thread_times`."""
    loop = times.get(loop_tid, 0.0)
    return loop, sum(times.values()) - loop


def tree_times(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds of every process in the trees rooted at `pids` (PostgreSQL forks backends)."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    times = proc.cpu_times()
                    out[proc.pid] = times.user + times.system
    return out


def tree_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds used between two snapshots (a process born in between counts from zero)."""
    return sum(after[pid] - before.get(pid, 0.0) for pid in after)


def busiest_thread(before: dict[int, float], after: dict[int, float]) -> int:
    """The thread that used the most CPU between two `thread_times` snapshots."""
    return max(after, key=lambda tid: after[tid] - before.get(tid, 0.0))


def pin(pid: int, cpu: int) -> None:
    """Pin every thread of a running process to one CPU (threads it starts later inherit it)."""
    for thread in psutil.Process(pid).threads():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(thread.id, {cpu})


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy (every process, every core)."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


class Contention:
    """How much CPU other processes used while we measured: the numbers are only as good as the
    machine was quiet."""

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = list(pids)
        self.t0, self.busy0, self.ours0 = time.perf_counter(), busy_seconds(), self._ours()

    def _ours(self) -> float:
        """This process, its children (reaped ones through os.times) and the given trees."""
        mine = os.times()
        live = tree_times([os.getpid(), *self.pids])
        live.pop(os.getpid(), None)
        reaped = mine.children_user + mine.children_system
        return mine.user + mine.system + reaped + sum(live.values())

    def other_cores(self) -> float:
        elapsed = time.perf_counter() - self.t0
        other = (busy_seconds() - self.busy0) - (self._ours() - self.ours0)
        return max(other, 0.0) / elapsed
