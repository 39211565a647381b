"""Turns each request and its outcome into exactly one history row, plus HDR latency histograms.

Failures the client sees (dropped connection, timeout, no instance reachable) become rows with
`success=false` and a client-side error code, so nothing is ever missing from the history.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
from hdrh.histogram import HdrHistogram

from actors.workload import RequestSpec
from analysis import hdr
from analysis.schema import HistoryBuffer

# Client-side error codes: outside the JSON-RPC server range (-32000..-32099), so a row tells a
# failure the server reported apart from one only the agent saw.
CONNECTION_LOST = -33001
CLIENT_TIMEOUT = -33002
NO_INSTANCE = -33003
CLIENT_ERROR = -33004

CLIENT_ERROR_REASONS: dict[int, str] = {
    CONNECTION_LOST: "connection_lost",
    CLIENT_TIMEOUT: "client_timeout",
    NO_INSTANCE: "no_instance",
    CLIENT_ERROR: "client_error",
}

#: Histogram key that holds every request of the swarm.
ALL = "all"
#: Samples kept for `actors.ray_metrics` between two takes; beyond this they are counted, not kept
#: (a swarm whose samples nobody takes must not grow without bound).
MAX_SAMPLES = 100_000


@dataclass(frozen=True)
class Outcome:
    """What came back: a result mapping, or an error code with reason and message.

    `applied` is the server's word on a failed write (`data.applied`): False = refused and not
    applied, True = applied despite the error, None = unknown (so possibly applied).
    """

    result: Mapping[str, Any] | None = None
    error_code: int | None = None
    error_reason: str | None = None
    error_message: str | None = None
    applied: bool | None = None

    @property
    def success(self) -> bool:
        if self.error_code is not None:
            return False
        # Tools report their own failure inside a successful JSON-RPC response.
        return bool(self.result.get("success", True)) if self.result is not None else True

    @classmethod
    def ok(cls, result: Any) -> Outcome:
        return cls(result=result if isinstance(result, Mapping) else {"value": result})

    @classmethod
    def client_failure(cls, code: int, message: str) -> Outcome:
        return cls(error_code=code, error_reason=CLIENT_ERROR_REASONS[code], error_message=message)


@dataclass(frozen=True)
class SessionInfo:
    """The agent's side of a request: who sent it, over which session, to which instance."""

    agent_id: str
    session_id: str | None = None
    instance_id: str | None = None
    node_id: str | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """What the Ray metrics need of one request (`Recorder.keep_samples`)."""

    method: str
    instance_id: str | None
    success: bool
    #: the error reason of a failed request ("ok" when it succeeded)
    outcome: str
    latency_ms: float
    timings: dict[str, float] | None


@dataclass
class SwarmOutput:
    """What a swarm ships to the driver: one record batch and encoded histograms by method."""

    batch: pa.RecordBatch
    histograms: dict[str, bytes] = field(default_factory=dict)


def _int_or_none(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def server_timings(result: Mapping[str, Any]) -> dict[str, float] | None:
    """The server's stage timings (ms) of an answer, or None when it reported none."""
    timings = result.get("timings")
    if not isinstance(timings, Mapping):
        return None
    return {
        str(stage): float(ms)
        for stage, ms in timings.items()
        if isinstance(ms, int | float) and not isinstance(ms, bool)
    }


def _recall_output(result: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The recall output inside a result: recall_memory itself, or the memory part of a memory
    or hybrid pattern's answer (cached answers have the same shape); None when there is none."""
    if isinstance(result.get("results"), list):
        return result
    inner = result.get("result")
    if not isinstance(inner, Mapping):
        return None
    parts = inner.get("parts")
    if isinstance(parts, Mapping):
        inner = parts.get("memory")
        if not isinstance(inner, Mapping) or not inner.get("ok", True):
            return None
    if inner.get("action") != "recall" or not isinstance(inner.get("output"), Mapping):
        return None
    output = inner["output"]
    return output if isinstance(output.get("results"), list) else None


def memories_seen(result: Mapping[str, Any]) -> list[str] | None:
    """Ids of the memories an answer included, in its order; None when it shows no recall."""
    output = _recall_output(result)
    if output is None:
        return None
    return [
        str(m["memory_id"])
        for m in output["results"]
        if isinstance(m, Mapping) and m.get("memory_id") is not None
    ]


def build_row(
    *,
    run_id: str,
    scenario: str,
    phase: str,
    request: RequestSpec,
    session: SessionInfo,
    outcome: Outcome,
    t_send_ns: int,
    t_recv_ns: int,
    t_intended_ns: int | None = None,
) -> dict[str, Any]:
    """The history row for one request (pure).

    `t_send_ns` is when the request really left; with `t_intended_ns` (open loop) latency is
    measured from the intended time and the row's `t_send_ns` is that intended time.
    """
    r: Mapping[str, Any] = outcome.result or {}
    origin = t_send_ns if t_intended_ns is None else t_intended_ns
    version_seen = r.get("version", r.get("version_seen"))
    version_written = r.get("version_written")
    if version_written is None and request.op == "invalidate":
        # invalidate_cache answers with the generation its bump produced.
        version_written = r.get("generation")
    error_reason = outcome.error_reason
    if error_reason is None and not outcome.success:
        error_reason = str(r.get("error") or "tool_failed")
    return {
        "run_id": run_id,
        "scenario": scenario,
        "agent_id": session.agent_id,
        "session_id": session.session_id,
        "instance_id": r.get("instance_id") or session.instance_id,
        "node_id": session.node_id,
        "method": request.method,
        "pattern_name": r.get("pattern_name") or request.pattern_name,
        "namespace": r.get("namespace") or request.namespace,
        "key": request.key,
        "op": request.op,
        "version_seen": _int_or_none(version_seen),
        "version_written": _int_or_none(version_written),
        "cache_hit": r.get("cache_hit") if isinstance(r.get("cache_hit"), bool) else None,
        "cache_tier": r.get("cache_tier"),
        "success": outcome.success,
        "error_code": outcome.error_code,
        "error_reason": error_reason,
        "t_send_ns": origin,
        "t_recv_ns": t_recv_ns,
        "latency_ms": max(0, t_recv_ns - origin) / 1e6,
        "server_time_ms": _float_or_none(r.get("execution_time_ms")),
        "tokens_used": _int_or_none(r.get("tokens_used")),
        "tokens_baseline": _int_or_none(r.get("tokens_baseline")),
        "tokens_untrimmed": _int_or_none(r.get("tokens_untrimmed")),
        "truncated": r.get("truncated") if isinstance(r.get("truncated"), bool) else None,
        "degraded": r.get("degraded") if isinstance(r.get("degraded"), bool) else None,
        "route": r.get("route"),
        "phase": phase,
        "global_version_seen": _int_or_none(r.get("global_version")),
        "t_intended_ns": t_intended_ns,
        "t_actual_send_ns": t_send_ns,
        # Filled by whoever knows this clock's offset to the driver (`actors.clock.stamp`).
        "clock_offset_ns": None,
        "clock_uncertainty_ns": None,
        "memory_id": None if r.get("memory_id") is None else str(r["memory_id"]),
        "memories_seen": memories_seen(r) if request.op == "read" else None,
        "topic": request.topic,
        "applied": outcome.applied,
        "server_timings": server_timings(r),
    }


class Recorder:
    """Collects rows in a columnar buffer and latencies in HDR histograms (overall and by method)."""

    def __init__(
        self,
        run_id: str,
        scenario: str,
        *,
        clock_offset_ns: int | None = None,
        clock_uncertainty_ns: int | None = None,
    ) -> None:
        self.run_id = run_id
        self.scenario = scenario
        # Known only on the driver (offset 0 by definition); a swarm's rows are stamped by the
        # driver when it gathers them (`actors.clock.stamp`).
        self._clock = {
            "clock_offset_ns": clock_offset_ns,
            "clock_uncertainty_ns": clock_uncertainty_ns,
        }
        self._buffer = HistoryBuffer()
        self._histograms: dict[str, HdrHistogram] = {}
        self.recorded = 0
        self._samples: list[Sample] | None = None
        self.samples_dropped = 0

    def keep_samples(self) -> None:
        """Keep a `Sample` of every request from now on, for `take_samples` (Ray metrics)."""
        if self._samples is None:
            self._samples = []

    def take_samples(self, limit: int | None = None) -> list[Sample]:
        """The oldest `limit` (default all) samples kept since the last take (none unless
        `keep_samples` was called); the rest wait for the next take."""
        samples = self._samples or []
        if self._samples is None:
            return []
        if limit is None or len(samples) <= limit:
            self._samples = []
            return samples
        self._samples = samples[limit:]
        return samples[:limit]

    def __len__(self) -> int:
        return len(self._buffer)

    def record(
        self,
        *,
        phase: str,
        request: RequestSpec,
        session: SessionInfo,
        outcome: Outcome,
        t_send_ns: int,
        t_recv_ns: int,
        t_intended_ns: int | None = None,
    ) -> None:
        """Append one row and its latency (`t_send_ns`: actual send; `t_intended_ns`: open-loop
        schedule, the latency origin when given)."""
        row = build_row(
            run_id=self.run_id,
            scenario=self.scenario,
            phase=phase,
            request=request,
            session=session,
            outcome=outcome,
            t_send_ns=t_send_ns,
            t_recv_ns=t_recv_ns,
            t_intended_ns=t_intended_ns,
        )
        row.update(self._clock)
        self._buffer.append(**row)
        for key in (ALL, request.method):
            hist = self._histograms.get(key)
            if hist is None:
                hist = self._histograms[key] = hdr.new_histogram()
            hdr.record_ms(hist, row["latency_ms"])
        self.recorded += 1
        if self._samples is not None:
            if len(self._samples) >= MAX_SAMPLES:
                self.samples_dropped += 1
            else:
                self._samples.append(
                    Sample(
                        request.method,
                        row["instance_id"],
                        row["success"],
                        "ok" if row["success"] else str(row["error_reason"]),
                        row["latency_ms"],
                        row["server_timings"],
                    )
                )

    def drain(self) -> SwarmOutput:
        """Everything recorded since the last drain; buffers and histograms start empty again."""
        out = SwarmOutput(
            batch=self._buffer.drain(),
            histograms={k: hdr.encode(h) for k, h in self._histograms.items()},
        )
        self._histograms = {}
        return out


def merge_outputs(outputs: list[SwarmOutput]) -> tuple[pa.Table, dict[str, HdrHistogram]]:
    """One table and exactly merged histograms from every swarm's output."""
    from analysis.schema import concat

    table = concat([o.batch for o in outputs if o.batch.num_rows])
    keys = {k for o in outputs for k in o.histograms}
    merged = {k: hdr.merge(o.histograms[k] for o in outputs if k in o.histograms) for k in keys}
    return table, merged
