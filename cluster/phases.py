"""Phases: one workload run on every swarm at once, watched until every swarm reports.

A phase's requests are split evenly across swarms (an open-loop rate too). A phase ends with
a count check: every request a swarm sent must have become a row (`RunError` otherwise).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import ray

from actors.agents import PhaseReport
from actors.workload import Workload
from cluster.calls import RunError
from cluster.progress import Progress

_STATUS_POLL_S = 0.5

#: Live counters of every swarm (`ClusterRun.status`).
Status = Callable[[], list[dict[str, Any]]]


def as_workload(workload: Workload | Mapping[str, Any]) -> Workload:
    """A `Workload` from itself or from its dict form."""
    return workload if isinstance(workload, Workload) else Workload.from_dict(workload)


def launch(swarms: list[Any], name: str, workload: Workload) -> list[Any]:
    """Start the phase on every swarm, each with an equal share of the rate; the phase refs."""
    share = 1.0 / len(swarms)
    return [s.run_phase.remote(name, workload, share) for s in swarms]


class PhaseHandle:
    """A running phase: `wait()` shows progress until every swarm reports, then checks counts.

    `reports` is the run's list of finished phase reports (shared, appended to by `wait`).
    """

    def __init__(
        self,
        name: str,
        workload: Workload,
        refs: list[Any],
        *,
        agents: int,
        status: Status,
        reports: list[PhaseReport],
        progress: Progress,
    ) -> None:
        self.name = name
        self.workload = workload
        self.refs = refs
        self._status = status
        self._run_reports = reports
        self._progress = progress
        if workload.rate is not None:
            self.expected = int(workload.rate.expected_count())
        else:
            self.expected = agents * (
                workload.requests_per_agent_max or workload.requests_per_agent
            )
        self.started = time.monotonic()
        self.reports: list[PhaseReport] | None = None

    def recorded(self) -> int:
        """Rows recorded so far across swarms (all phases)."""
        return sum(s["recorded"] for s in self._status())

    def wait_until_recorded(self, rows: int, timeout_s: float = 60.0) -> int:
        """Block until this phase has recorded `rows` rows (or it ended); returns the count."""
        base = sum(r.recorded for r in self._run_reports)
        deadline = time.monotonic() + timeout_s
        pending = list(self.refs)
        while True:
            done = sum(s["recorded"] for s in self._status()) - base
            if done >= rows or not pending:
                return done
            if time.monotonic() >= deadline:
                raise RunError(f"phase {self.name}: only {done} of {rows} rows within {timeout_s}s")
            # Waiting on the phase itself paces the poll and ends it early if the phase finishes.
            _, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)

    def wait(self, timeout_s: float | None = None) -> list[PhaseReport]:
        """Block until the phase ends (bounded by the workload's max duration plus a grace)."""
        if self.reports is not None:
            return self.reports
        bound = timeout_s or self.workload.max_duration_s + self.workload.request_timeout_s + 60
        deadline = time.monotonic() + bound
        base = sum(r.recorded for r in self._run_reports)
        with self._progress.phase(self.name, total=self.expected) as bar:
            pending = list(self.refs)
            while pending:
                if time.monotonic() >= deadline:
                    raise RunError(f"phase {self.name} did not finish within {bound:.0f}s")
                # The wait on the phase refs is the pacing: it returns as soon as all are done.
                _, pending = ray.wait(pending, num_returns=len(pending), timeout=_STATUS_POLL_S)
                try:
                    status = self._status()
                except ray.exceptions.RayError:
                    continue
                done = sum(s["recorded"] for s in status) - base
                errors = sum(s["reconnects"] for s in status)
                elapsed = max(time.monotonic() - self.started, 1e-3)
                bar.update_to(max(done, 0), rps=f"{done / elapsed:.0f}", reconnects=errors)
        self.reports = ray.get(self.refs)
        self._run_reports.extend(self.reports)
        lost = [r for r in self.reports if r.sent != r.recorded]
        if lost:
            raise RunError(f"phase {self.name}: requests without rows in {lost}")
        return self.reports
