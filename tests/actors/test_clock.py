"""Clock offsets measured NTP-style and stamped onto a swarm's rows (pure, no Ray)."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest

from actors.clock import ClockOffset, ClockSample, clock_report, measure, stamp
from analysis.schema import HistoryBuffer


def test_sample_offset_and_uncertainty() -> None:
    s = ClockSample(t0=1_000, remote=51_500, t1=3_000)  # remote 50 µs ahead, 2 µs round trip
    assert s.offset_ns == 49_500 and s.uncertainty_ns == 1_000
    with pytest.raises(ValueError):
        ClockSample(t0=5, remote=0, t1=4)


def test_measure_keeps_the_shortest_round_trip() -> None:
    driver = itertools.count(0, 1)
    rtts = iter([10, 2, 6])  # the second exchange is the quickest

    def clock() -> int:
        return next(driver) * 100

    def exchange() -> int:
        for _ in range(next(rtts)):
            next(driver)
        return 1_000_000

    best = measure(exchange, clock, exchanges=3)
    assert best.t1 - best.t0 == 300  # 2 ticks inside + the tick of reading t1


def test_offset_over_the_run_widens_by_the_drift() -> None:
    start = ClockSample(0, 5_000, 1_000)  # offset 4_500 ± 500
    end = ClockSample(10_000, 16_000, 10_400)  # offset 5_800 ± 200
    used = ClockOffset.over_run(start, end)
    assert used.offset_ns == (4_500 + 5_800) // 2
    assert used.uncertainty_ns == 500 + 650  # worst half-RTT + half the drift
    # The true offset at either end lies within the bound.
    for s in (start, end):
        assert abs(s.offset_ns - used.offset_ns) <= used.uncertainty_ns - s.uncertainty_ns + 1
    assert ClockOffset.over_run(start) == ClockOffset(4_500, 500)
    report = clock_report(start, end)
    assert report["uncertainty_ms"] == pytest.approx(0.00115)


def test_stamp_fills_only_missing_offsets() -> None:
    buf = HistoryBuffer()
    base = dict(run_id="r", scenario="s", agent_id="a", method="m", op="read", success=True)
    buf.append(**base, t_send_ns=1, t_recv_ns=2, latency_ms=0.0)
    buf.append(**base, t_send_ns=1, t_recv_ns=2, latency_ms=0.0, clock_offset_ns=0,
               clock_uncertainty_ns=0)  # fmt: skip
    batch = stamp(buf.drain(), ClockOffset(7, 3))
    table = pa.Table.from_batches([batch])
    assert table.column("clock_offset_ns").to_pylist() == [7, 0]
    assert table.column("clock_uncertainty_ns").to_pylist() == [3, 0]
