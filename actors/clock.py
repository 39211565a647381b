"""Clock offset of a swarm to the driver, measured NTP-style, and stamped onto the swarm's rows.

A swarm's rows carry its own wall clock (`time.time_ns()` on its Ray node). To compare a write
acknowledged on one node with a read begun on another, the checker needs both on one clock. The
driver asks each swarm for its time: it sends at `t0` (driver clock), the swarm reads its clock
(`remote`), the driver gets the answer at `t1`. The swarm's clock minus the driver's is then
`remote − (t0 + t1) / 2`, give or take half the round trip: that half is the uncertainty. The
best of a few exchanges (shortest round trip) is kept, once when the swarms start and once before
their rows are gathered; a row gets the mean of the two offsets, widened by half their difference
(clock drift during the run), so the true offset lies within ± uncertainty of it all run long.

Pure: `measure` takes the round trip as a callable, so it runs without Ray in tests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

#: Exchanges per measurement; the one with the shortest round trip wins (least queueing in it).
EXCHANGES = 5


@dataclass(frozen=True)
class ClockSample:
    """One exchange: driver sent at `t0`, the remote read `remote`, the driver heard at `t1`."""

    t0: int
    remote: int
    t1: int

    def __post_init__(self) -> None:
        if self.t1 < self.t0:
            raise ValueError(f"clock exchange ends before it starts ({self.t0} > {self.t1})")

    @property
    def offset_ns(self) -> int:
        """Remote clock minus driver clock."""
        return self.remote - (self.t0 + self.t1) // 2

    @property
    def uncertainty_ns(self) -> int:
        """Half the round trip (rounded up): the remote read its clock somewhere inside it."""
        return (self.t1 - self.t0 + 1) // 2


def measure(
    exchange: Callable[[], int], clock: Callable[[], int], exchanges: int = EXCHANGES
) -> ClockSample:
    """The best of `exchanges` round trips; `exchange()` returns the remote's clock reading and
    `clock()` is the driver's (`time.time_ns`)."""
    best: ClockSample | None = None
    for _ in range(max(1, exchanges)):
        t0 = clock()
        remote = exchange()
        sample = ClockSample(t0, int(remote), clock())
        if best is None or sample.uncertainty_ns < best.uncertainty_ns:
            best = sample
    assert best is not None
    return best


@dataclass(frozen=True)
class ClockOffset:
    """A source's offset to the driver (remote − driver) over a run, and its error bound."""

    offset_ns: int
    uncertainty_ns: int

    @classmethod
    def over_run(cls, start: ClockSample, end: ClockSample | None = None) -> ClockOffset:
        """From the start (and end) measurements: the mean offset, widened by the drift."""
        if end is None:
            return cls(start.offset_ns, start.uncertainty_ns)
        drift = abs(end.offset_ns - start.offset_ns)
        return cls(
            (start.offset_ns + end.offset_ns) // 2,
            max(start.uncertainty_ns, end.uncertainty_ns) + (drift + 1) // 2,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clock_report(start: ClockSample, end: ClockSample | None) -> dict[str, Any]:
    """The measurements and the offset used, for metrics.json (milliseconds for people)."""
    used = ClockOffset.over_run(start, end)
    return {
        "start": {**asdict(start), "offset_ns": start.offset_ns, "rtt_ns": start.t1 - start.t0},
        "end": None
        if end is None
        else {**asdict(end), "offset_ns": end.offset_ns, "rtt_ns": end.t1 - end.t0},
        "offset_ms": used.offset_ns / 1e6,
        "uncertainty_ms": used.uncertainty_ns / 1e6,
    }


def stamp(batch: pa.RecordBatch, clock: ClockOffset) -> pa.RecordBatch:
    """The batch with `clock_offset_ns`/`clock_uncertainty_ns` filled where they are null."""
    columns = {}
    for name, value in (
        ("clock_offset_ns", clock.offset_ns),
        ("clock_uncertainty_ns", clock.uncertainty_ns),
    ):
        column = batch.column(batch.schema.get_field_index(name))
        columns[name] = pc.fill_null(column, pa.scalar(value, pa.int64()))
    arrays = [columns.get(field.name, batch.column(i)) for i, field in enumerate(batch.schema)]
    return pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
