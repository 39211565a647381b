"""Invalidation propagation delay per instance, measured from the history alone.

For every acknowledged write of generation g on namespace N (ack = the writer's `t_recv_ns`) and
every instance that served reads of N:

* **delay** = `t_recv_ns` of the first read served by that instance that *began* after the ack
  and saw ≥ g, minus the ack. It is an upper bound of the true propagation time (the instance
  was known to serve g by then); how tight it is depends on how often that instance is read.
* **staleness window** = `t_recv_ns` of the last read served by that instance that began after
  the ack and still saw < g, minus the ack; 0 when there was none. The instance was still stale
  at least until somewhere inside that read, so this is (nearly) a lower bound.

Writes after which an instance served no fresh read before the run ended count as `unobserved`.
Times are on the driver's clock (`history_view`); these are measurements, not verdicts, so the
clock uncertainty is left to the stale-read checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from analysis.history_view import Ops, groups


def _dist(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "max": None}
    arr = np.asarray(values, dtype=float)
    return {
        "count": int(arr.size),
        "p50": float(np.percentile(arr, 50, method="inverted_cdf")),
        "p95": float(np.percentile(arr, 95, method="inverted_cdf")),
        "max": float(arr.max()),
    }


@dataclass
class InstanceDelays:
    """Propagation samples of one instance (milliseconds)."""

    delays_ms: list[float] = field(default_factory=list)
    windows_ms: list[float] = field(default_factory=list)
    unobserved: int = 0

    def stats(self) -> dict[str, object]:
        """count/p50/p95/max of delays and staleness windows, plus unobserved writes."""
        return {
            "delay_ms": _dist(self.delays_ms),
            "staleness_window_ms": _dist(self.windows_ms),
            "unobserved": self.unobserved,
        }


def _instance_reads(reads: Ops, idx: np.ndarray) -> dict[str, tuple[np.ndarray, ...]]:
    """Per instance: (begin, end, seen) sorted by begin (driver clock)."""
    out: dict[str, tuple[np.ndarray, ...]] = {}
    instances = reads["instance_id"][idx]
    for inst in sorted({i for i in instances.tolist() if i is not None}):
        sel = idx[instances == inst]
        sel = sel[np.argsort(reads.begin[sel], kind="stable")]
        out[inst] = (reads.begin[sel], reads.end[sel], reads.version[sel])
    return out


def _one(ack: int, g: int, send: np.ndarray, recv: np.ndarray, seen: np.ndarray) -> tuple:
    start = int(np.searchsorted(send, ack, side="right"))
    after_seen, after_recv = seen[start:], recv[start:]
    fresh = after_seen >= g
    delay = None
    if fresh.any():
        delay = (int(after_recv[int(np.argmax(fresh))]) - ack) / 1e6
    stale_recv = after_recv[~fresh]
    window = (int(stale_recv.max()) - ack) / 1e6 if stale_recv.size else 0.0
    return delay, window


def propagation_delays(writes: Ops, reads: Ops) -> dict[str, InstanceDelays]:
    """Per-instance delays and staleness windows over every acknowledged write."""
    result: dict[str, InstanceDelays] = {}
    read_groups = dict(groups(reads["namespace"]))
    for namespace, w_idx in groups(writes["namespace"]):
        r_idx = read_groups.get(namespace)
        if r_idx is None:
            continue
        per_instance = _instance_reads(reads, r_idx)
        for w in w_idx.tolist():
            ack, g = int(writes.end[w]), int(writes.version[w])
            for inst, (send, recv, seen) in per_instance.items():
                samples = result.setdefault(inst, InstanceDelays())
                delay, window = _one(ack, g, send, recv, seen)
                if delay is None:
                    samples.unobserved += 1
                else:
                    samples.delays_ms.append(delay)
                samples.windows_ms.append(window)
    return result


def all_delays_ms(per_instance: dict[str, InstanceDelays]) -> list[float]:
    """Every delay sample of every instance (for the dashboard histogram)."""
    return [d for samples in per_instance.values() for d in samples.delays_ms]
