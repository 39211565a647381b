"""Acknowledged writes must survive a fault: marked writes, and the reads after recovery that must
include them — the driver's own small `set-full` check, beside the content checker over the
swarms' tracked rows (analysis/content.py): it primes a cached answer on every instance first, so
a write the cache never heard of shows up as a stale cached answer.

One `WriteProbe` owns one fresh namespace (a driver agent of its own) and one memory query
routed to a namespace-scoped memory pattern:

1. `prime`: every instance answers the query with the cache on, so a pre-write answer is cached
   everywhere (L2 and each instance's L1) — the answer a lost invalidation would keep serving;
2. `write`: during the fault, one uniquely marked memory is stored through every instance;
3. `verify`: after recovery, every instance answers the same query again with the cache on, and
   `recall_memory` (the database itself); each acknowledged marker must be in every answer.

A write that came back with an error is *possibly applied* and never counted against the server,
unless its error says `applied: false` (then it was refused, and is not looked for either). Each
probe writes at most `limit` markers, so the pattern's top-`limit` recall can hold all of them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from analysis import checks
from analysis.checks import Criterion, Evidence
from experiments.support.driver import Call, DriverLog
from service.client import WsClient

#: The memory pattern `recall_topic` answers "find my notes about <topic>" with a top-3 recall.
PATTERN_LIMIT = 3
RECALL_LIMIT = 50
CALL_TIMEOUT_S = 30.0


@dataclass
class MarkedWrite:
    """One marked `store_memory` and what came of it."""

    marker: str
    via: str  # instance the write went through
    phase: str
    outcome: str  # acked | refused | unknown
    t_send_ns: int
    t_ack_ns: int
    error: str | None = None


@dataclass
class Sighting:
    """Whether one post-recovery read on one instance included one acknowledged marker."""

    marker: str
    instance: str
    via: str  # pattern (cached execute_pattern) | recall (recall_memory, the database)
    seen: bool
    degraded: bool | None
    cache_tier: str | None


@dataclass
class ProbeReport:
    """Everything one probe wrote and read, as plain data for the facts."""

    namespace: str
    query: str
    writes: list[MarkedWrite] = field(default_factory=list)
    sightings: list[Sighting] = field(default_factory=list)
    read_errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_outcome(call: Call) -> tuple[str, str | None]:
    """acked, refused (an error saying applied=false) or unknown (any other failure)."""
    if call.ok:
        return "acked", None
    error = (call.reply or {}).get("error") or {}
    data = error.get("data") if isinstance(error.get("data"), dict) else {}
    text = f"{call.outcome.error_code} {call.outcome.error_reason}"
    return ("refused" if data.get("applied") is False else "unknown"), text


def memory_route(result: Any) -> str | None:
    """What is wrong with a pattern answer that did not come from a memory pattern."""
    route = (result or {}).get("route")
    return None if route == "memory" else f"not_memory_route: answered by route {route!r}"


def _includes(result: Any, marker: str) -> bool:
    """Whether `marker` appears anywhere in a result (its memories' content)."""
    return marker in json.dumps(result, default=str)


class WriteProbe:
    """Marked writes in one namespace through every instance, checked after recovery."""

    def __init__(
        self, log: DriverLog, ws_urls: Sequence[str], agent_id: str, topic: str, phase: str
    ) -> None:
        self.log = log
        self.ws_urls = list(ws_urls)
        self.agent_id = agent_id
        self.topic = topic
        self.phase = phase
        self.query = f"find my notes about {topic}"
        self.report = ProbeReport(namespace=agent_id, query=self.query)

    @asynccontextmanager
    async def _sessions(self) -> AsyncIterator[list[WsClient]]:
        """One session per instance for one step (a step may run on its own event loop)."""
        sessions = await asyncio.gather(
            *(WsClient.connect(u, self.agent_id) for u in self.ws_urls), return_exceptions=True
        )
        opened = [s for s in sessions if isinstance(s, WsClient)]
        try:
            failed = [s for s in sessions if not isinstance(s, WsClient)]
            if failed:
                raise failed[0]
            yield opened
        finally:
            await asyncio.gather(*(s.close() for s in opened), return_exceptions=True)

    async def _pattern(self, session: WsClient, phase: str) -> Call:
        """The probe's query, cache on; an answer not from the memory pattern is a failed row
        (the LLM knows nothing of the writes, so it could neither show nor hide them)."""
        return await self.log.call(
            session,
            "execute_pattern",
            {"query": self.query, "use_cache": True},
            phase=phase,
            key=self.query,
            timeout_s=CALL_TIMEOUT_S,
            expect=memory_route,
        )

    async def prime(self) -> None:
        """Every instance computes or fetches the pre-write answer (one after another, so the
        first fills L2 and the others take it from there into their L1)."""
        async with self._sessions() as sessions:
            for session in sessions:
                call = await self._pattern(session, f"{self.phase}-prime")
                if not call.ok:
                    self.report.read_errors.append(
                        f"prime on {session.instance_id}: {call.outcome.error_reason}"
                    )

    async def write_one(self) -> MarkedWrite:
        """One marked memory through the first instance only."""
        async with self._sessions() as sessions:
            return await self._write_through(sessions[0])

    async def ask(self) -> list[tuple[str, Call]]:
        """The probe's query on every instance, cache on: (instance id, call) each."""
        async with self._sessions() as sessions:
            return [(s.instance_id, await self._pattern(s, self.phase)) for s in sessions]

    async def write(self) -> list[MarkedWrite]:
        """One marked memory through every instance, concurrently; returns the writes."""
        room = PATTERN_LIMIT - len(self.report.writes)
        if room < len(self.ws_urls):
            raise ValueError(f"a probe holds at most {PATTERN_LIMIT} markers (top-k of recall)")

        async with self._sessions() as sessions:
            return list(await asyncio.gather(*(self._write_through(s) for s in sessions)))

    async def _write_through(self, session: WsClient) -> MarkedWrite:
        """One marked memory through `session`'s instance (kept in the report)."""
        marker = f"mk{uuid.uuid4().hex[:12]}"
        call = await self.log.call(
            session,
            "store_memory",
            {"content": f"{self.topic}: {marker} stored by the {self.phase} probe"},
            phase=f"{self.phase}-write",
            key=self.query,
            timeout_s=CALL_TIMEOUT_S,
        )
        outcome, error = write_outcome(call)
        made = MarkedWrite(
            marker, session.instance_id, self.phase, outcome,
            call.row["t_send_ns"], call.row["t_recv_ns"], error,
        )  # fmt: skip
        self.report.writes.append(made)
        return made

    async def verify(self) -> ProbeReport:
        """Every instance: the cached pattern answer and the database's recall, each checked for
        every acknowledged marker."""
        acked = [w.marker for w in self.report.writes if w.outcome == "acked"]
        async with self._sessions() as sessions:
            for session in sessions:
                await self._verify_one(session, acked)
        return self.report

    async def _verify_one(self, session: WsClient, acked: list[str]) -> None:
        answer = await self._pattern(session, f"{self.phase}-verify")
        recall = await self.log.call(
            session,
            "recall_memory",
            {"query": self.topic, "limit": RECALL_LIMIT, "include_shared": False},
            phase=f"{self.phase}-verify",
            key=self.topic,
            timeout_s=CALL_TIMEOUT_S,
        )
        for via, call in (("pattern", answer), ("recall", recall)):
            if not call.ok:
                self.report.read_errors.append(
                    f"{via} on {session.instance_id}: {call.outcome.error_code} "
                    f"{call.outcome.error_reason}"
                )
                continue
            result = call.result or {}
            content = result.get("result", result)
            self.report.sightings += [
                Sighting(
                    marker,
                    session.instance_id,
                    via,
                    _includes(content, marker),
                    result.get("degraded"),
                    result.get("cache_tier"),
                )
                for marker in acked
            ]


@dataclass(frozen=True)
class Visibility:
    """Counts over probe reports: what was written, and how much of it was read back."""

    attempted: int
    acked: int
    refused: int
    unknown: int
    reads_expected: int
    reads_done: int
    missing: int
    missing_examples: tuple[str, ...]
    via: str = "pattern"

    @classmethod
    def of(cls, reports: Sequence[dict[str, Any]], via: str, instances: int) -> Visibility:
        """Tally the `via` reads (pattern or recall) of plain-data probe reports."""
        writes = [w for r in reports for w in r["writes"]]
        acked = [w for w in writes if w["outcome"] == "acked"]
        seen = [s for r in reports for s in r["sightings"] if s["via"] == via]
        missing = [s for s in seen if not s["seen"]]
        examples = tuple(
            f"{s['marker']} not in the {via} answer of {s['instance']} "
            f"(tier {s['cache_tier']}, degraded {s['degraded']})"
            for s in missing[:5]
        )
        return cls(
            attempted=len(writes),
            acked=len(acked),
            refused=sum(1 for w in writes if w["outcome"] == "refused"),
            unknown=sum(1 for w in writes if w["outcome"] == "unknown"),
            reads_expected=len(acked) * instances,
            reads_done=len(seen),
            missing=len(missing),
            missing_examples=examples,
            via=via,
        )


def visibility_criterion(
    name: str,
    vis: Visibility,
    reports: Sequence[dict[str, Any]],
    where: str,
    *,
    evidence: Evidence,
    section: str,
) -> Criterion:
    """No acknowledged probe write missing from any instance's `where` answer after recovery;
    every prime and read must have been answered (by the memory pattern) to judge it."""
    # A failed recall leaves the database view unjudged; a failed prime or pattern answer the
    # cached view.
    kinds = ("recall",) if vis.via == "recall" else ("prime", "pattern")
    errors = [e for r in reports for e in r["read_errors"] if e.startswith(kinds)]
    measured = (
        f"{vis.reads_done - vis.missing}/{vis.reads_expected} reads include their write "
        f"({vis.acked} acked, {vis.refused} refused, {vis.unknown} unknown of {vis.attempted})"
    )
    if vis.missing_examples:
        measured += "; " + "; ".join(vis.missing_examples)
    if errors:
        measured += "; not judged: " + "; ".join(errors[:3])
    complete = vis.reads_done == vis.reads_expected and not errors
    return checks.holds(
        name,
        complete and vis.missing == 0,
        measured=measured,
        expectation=f"every acknowledged write in every instance's {where} answer after recovery",
        evidence=evidence,
        description="an acknowledged write is never lost",
        section=section,
    )


async def baseline_probe(
    log: DriverLog,
    ws_urls: Sequence[str],
    owner: str,
    stranger: str,
    topic: str,
    *,
    settle_s: float = 0.0,
) -> dict[str, Any]:
    """Before any fault: a write through one instance is in every instance's cached answer, and
    never in another namespace's answer to the same query.

    `owner` primes the query on every instance, stores one marked memory through the first,
    waits `settle_s` (eventual mode's stated bound) and reads on every instance; `stranger`, a
    namespace of its own, then asks the same query everywhere (its answers must not show the
    marker). Returns the owner's report plus `foreign` (the stranger's answers that showed it)
    and `stranger_reads`.
    """
    probe = WriteProbe(log, ws_urls, owner, topic, "baseline")
    await probe.prime()
    made = await probe.write_one()
    if settle_s:
        # Eventual mode promises visibility within its bound, not at once.
        await asyncio.sleep(settle_s)
    await probe.verify()
    stranger_probe = WriteProbe(log, ws_urls, stranger, topic, "baseline-stranger")
    foreign: list[str] = []
    reads = 0
    for instance, call in await stranger_probe.ask():
        if not call.ok:
            probe.report.read_errors.append(f"stranger on {instance}: {call.outcome.error_reason}")
            continue
        reads += 1
        if _includes((call.result or {}).get("result"), made.marker):
            foreign.append(f"{made.marker} in {stranger}'s answer on {instance}")
    return {**probe.report.to_dict(), "foreign": foreign, "stranger_reads": reads}


def baseline_criteria(
    report: dict[str, Any], instances: int, *, section: str, visibility_critical: bool = True
) -> list[Criterion]:
    """The no-fault baseline of `baseline_probe`: the write visible on every instance's cached
    answer, and the same query in another namespace never showing it."""
    vis = Visibility.of([report], "pattern", instances)
    foreign = report["foreign"]
    return [
        dataclasses.replace(
            visibility_criterion(
                "acked_writes_visible_across_instances",
                vis,
                [report],
                "cached",
                evidence=Evidence("acknowledged writes before any fault", vis.acked, 1),
                section=section,
            ),
            critical=visibility_critical,
        ),
        checks.holds(
            "namespace_isolation",
            not foreign,
            measured="; ".join(foreign) or "no answer showed another namespace's memory",
            expectation="an answer never includes another namespace's memory",
            evidence=Evidence(
                "another namespace's answers to the same query", report["stranger_reads"], instances
            ),
            description="the same query in two namespaces: each answer from its own memories",
            section=section,
        ),
    ]
