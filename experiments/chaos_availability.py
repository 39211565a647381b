"""Availability under faults (chaos): which fault each request was under, whether the design lets
that fault fail it, and the floors per fault kind.

Attribution. A timed fault covers the requests in flight at any moment from its application to
its heal plus `RECOVERY_GRACE_S` (never healed: to the end of the run). A request sent 20 ms
before a freeze and timed out by it is the freeze's; instances notice a healed server at their
next health check or probe and recover, so failures in that tail are the fault's too. A request covered by exactly one timed fault is
that fault's. A request covered by two or more is "overlapping": reported, never gated — the row
cannot say which fault failed it, and blaming either would judge one fault by another's design
(a drawn schedule runs its faults one at a time, `cluster.nemesis.schedule.generate`, so only
hand-written schedules have such rows). A clock skew changes no answer of the service (only the
skewed swarm's recorded timestamps), so it never makes a request overlapping: the clock fault's
requests are the skewed swarms' requests under no timed fault. Requests under no fault at all
("unfaulted": before the first fault, between faults after the grace, the healed tail) must
succeed like in a run without faults: a fault whose damage outlives the grace shows there.
Chaos passes the rows of its load phase only (the nemesis runs there).

Exposure. Each fault kind can fail, by design, only some requests ("exposed"); the others
("spared") must succeed as if nothing happened. `availability_<kind>` gates the spared ones;
the exposed ones are reported, gated only where the design promises an answer (latency), and
every failure under a single fault must carry a code the design gives for it
(`failures_designed`): -32002 (database/cache unavailable), -32001 (a deadline), -32003 (a pool
waited out); for a killed instance also the client's lost connection / no instance / timeout.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from actors.recorder import CLIENT_TIMEOUT, CONNECTION_LOST, NO_INSTANCE
from analysis import checks
from analysis.checks import Criterion, Evidence
from analysis.history_view import clock_columns

SECTION = "chaos"
#: The tail after a heal still charged to the fault (the generator leaves more quiet than this
#: after every drawn fault, `HEAL_GAP_S`, so the tail is never another fault's).
RECOVERY_GRACE_S = 5.0
#: Rows a measured share needs before it means anything.
MIN_ROWS = 20
OVERLAPPING = "overlapping"
UNFAULTED = "unfaulted"
#: Requests under no fault: the run's own floor (no fault, nothing may fail; 1 % for a busy box).
UNFAULTED_PCT = 99.0
#: Server error codes the design answers a fault with (errors.py): -32001 a deadline (the pattern's
#: 2 s, the database call's 5 s), -32002 dependency/database/cache unavailable, -32003 a pool
#: waited out.
DESIGNED_SERVER_CODES = frozenset({-32001, -32002, -32003})
#: What an agent sees of a killed instance: its socket dies, no instance to move to yet, or no
#: answer before the request's deadline.
KILLED_CLIENT_CODES = frozenset({CONNECTION_LOST, NO_INSTANCE, CLIENT_TIMEOUT})

Exposure = Callable[[dict[str, Any], dict[str, Any]], bool]


def _ops(*ops: str) -> Exposure:
    return lambda fault, row: row["op"] in ops


def _on_instance(fault: dict[str, Any], row: dict[str, Any]) -> bool:
    """The row went to (or, instance unknown, may have gone to) the fault's instance."""
    instance = fault["target"].split("/")[0]
    return row["instance_id"] is None or str(row["instance_id"]).endswith(f"-{instance}")


def _link(fault: dict[str, Any], row: dict[str, Any]) -> bool:
    """A link inst-N/redis carries every request of inst-N (strict reads check generations in
    Redis); inst-N/postgres the ones that may need the database (reads that miss, writes)."""
    if not _on_instance(fault, row):
        return False
    return fault["target"].endswith("/redis") or row["op"] in ("read", "write")


def _nothing(fault: dict[str, Any], row: dict[str, Any]) -> bool:
    return False


@dataclass(frozen=True)
class KindRule:
    """What one fault kind may fail, the floors, and why (from what the design does)."""

    exposed: Exposure
    #: Floor (%) for the spared requests.
    spared_pct: float
    why_spared: str
    #: Floor (%) for the exposed requests; None: not gated (failing them is the design).
    exposed_pct: float | None = None
    why_exposed: str = "failing them is the designed answer while the dependency is away"
    #: Extra error codes the design gives this fault (client side).
    codes: frozenset[int] = frozenset()
    #: Spared requests the floor needs before it means anything.
    min_spared: int = MIN_ROWS


_REDIS_AWAY = KindRule(
    _ops("write", "invalidate"),
    95.0,
    "reads are served degraded from the database; one in flight at the loss waits out the 1 s "
    "Redis socket timeout, inside the 2 s pattern budget",
    why_exposed="strict refuses writes and invalidations with -32002 cache_unavailable until "
    "Redis is back and the instance has recovered",
)
_POSTGRES_AWAY = KindRule(
    _ops("read", "write"),
    99.0,
    "invalidate_cache touches only Redis",
    why_exposed="writes and every read that misses the cache need the database: -32002 "
    "database_unavailable once suspected, -32001 at the deadline before",
    # Invalidations are a tenth of the 4.3 mix: a 2 s pause + 5 s grace at ci's 25 req/s spares
    # ~17 of them. Ten with none failing still says they do not depend on the database.
    min_spared=10,
)
_LINK = KindRule(
    _link,
    99.0,
    "the other instances' links are untouched",
    why_exposed="the instance's requests that need the faulty link may time out or be refused",
)
_CHANNEL = KindRule(
    _nothing,
    99.0,
    "the pub/sub stream only drops L1 entries early; strict L1 hits check generations in Redis",
)
#: Per fault kind (`fault_kind`); a kind missing here is a programming error (KeyError).
KIND_RULES: dict[str, KindRule] = {
    "pause-redis": _REDIS_AWAY,
    "stop-redis": _REDIS_AWAY,
    "pause-postgres": _POSTGRES_AWAY,
    "stop-postgres": _POSTGRES_AWAY,
    "kill": KindRule(
        _on_instance,
        99.0,
        "the other instances share nothing with the killed process but the servers",
        why_exposed="its in-flight requests die with it; its agents move once it is gone",
        codes=KILLED_CLIENT_CODES,
    ),
    "latency": KindRule(
        _link,
        99.0,
        _LINK.why_spared,
        exposed_pct=90.0,
        why_exposed="≤ 220 ms per chunk, a few round trips: far inside the 2 s / 5 s deadlines",
    ),
    "bandwidth": _LINK,
    "reset": _LINK,
    "partition": _LINK,
    "drop-invalidations": _CHANNEL,
    "delay-invalidations": _CHANNEL,
    "clock": KindRule(
        _nothing, 99.0, "the skew is in the swarm's timestamps; the service never sees it"
    ),
}


def fault_kind(fault: dict[str, Any]) -> str:
    """`pause-redis`, `stop-postgres`, `kill`, `partition`, `drop-invalidations`, `clock`, …"""
    if fault["kind"] in ("pause", "stop"):
        return f"{fault['kind']}-{fault['target']}"
    return str(fault["kind"])


def _timed(faults: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [f for f in faults if f["category"] != "clock" and f["applied_ns"] is not None]


def _covers_until_ns(fault: dict[str, Any]) -> int:
    """Heal + grace; a fault never healed (faults_healed fails it) covers the rest of the run."""
    if fault["healed_ns"] is None:
        return np.iinfo(np.int64).max
    return int(fault["healed_ns"]) + int(RECOVERY_GRACE_S * 1e9)


def attribute(
    table: pa.Table, faults: list[dict[str, Any]], swarm_agents: dict[Any, list[str]]
) -> list[tuple[str, dict[str, Any] | None]]:
    """Per row: (kind, the fault) — or (OVERLAPPING, None), (UNFAULTED, None); rows of a skewed
    swarm under no timed fault are ("clock", that clock fault)."""
    begin, end, _ = clock_columns(table)
    cover = np.zeros(table.num_rows, dtype=np.int64)
    owner = np.full(table.num_rows, -1, dtype=np.int64)
    timed = _timed(faults)
    for index, f in enumerate(timed):
        lo, hi = int(f["applied_ns"]), _covers_until_ns(f)
        inside = (end >= lo) & (begin <= hi)  # in flight at any moment of it
        cover += inside
        owner[inside] = index
    by_swarm = {str(k): ids for k, ids in swarm_agents.items()}
    clocks: dict[str, dict[str, Any]] = {}
    for f in faults:
        if f["category"] == "clock" and f["applied_ns"] is not None:
            for agent in by_swarm.get(str(int(f["target"].split("-")[1])), []):
                clocks[agent] = f
    agents = table.column("agent_id").to_pylist()
    out: list[tuple[str, dict[str, Any] | None]] = []
    for i in range(table.num_rows):
        if cover[i] > 1:
            out.append((OVERLAPPING, None))
        elif cover[i] == 1:
            f = timed[int(owner[i])]
            out.append((fault_kind(f), f))
        elif agents[i] in clocks:
            out.append(("clock", clocks[agents[i]]))
        else:
            out.append((UNFAULTED, None))
    return out


@dataclass
class Share:
    """Requests of one group and how many succeeded."""

    rows: int = 0
    ok: int = 0

    def add(self, success: bool) -> None:
        self.rows += 1
        self.ok += int(success)

    @property
    def pct(self) -> float | None:
        return None if self.rows == 0 else round(100.0 * self.ok / self.rows, 2)

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "ok": self.ok, "success_pct": self.pct}


@dataclass
class KindAvailability:
    spared: Share
    exposed: Share
    #: Failed rows whose error code the design does not give this fault: (code, reason) -> n.
    undesigned: dict[str, int]


def availability(
    table: pa.Table, faults: list[dict[str, Any]], swarm_agents: dict[Any, list[str]]
) -> tuple[dict[str, KindAvailability], Share, Share]:
    """Per fault kind present: spared and exposed shares; and the overlapping and unfaulted rows."""
    names = ["op", "instance_id", "success", "error_code", "error_reason"]
    rows = table.select(names).to_pylist()
    kinds: dict[str, KindAvailability] = {}
    overlapping, unfaulted = Share(), Share()
    for row, (kind, fault) in zip(rows, attribute(table, faults, swarm_agents), strict=True):
        if kind == OVERLAPPING:
            overlapping.add(bool(row["success"]))
            continue
        if kind == UNFAULTED or fault is None:
            unfaulted.add(bool(row["success"]))
            continue
        rule = KIND_RULES[kind]
        found = kinds.setdefault(kind, KindAvailability(Share(), Share(), {}))
        exposed = rule.exposed(fault, row)
        (found.exposed if exposed else found.spared).add(bool(row["success"]))
        code = row["error_code"]
        if not row["success"] and code not in DESIGNED_SERVER_CODES | rule.codes:
            label = f"{code}: {row['error_reason']}" + ("" if exposed else " (spared)")
            found.undesigned[label] = found.undesigned.get(label, 0) + 1
    for f in faults:  # a fault that covered no request is still a kind the run must judge
        if f["applied_ns"] is not None:
            kinds.setdefault(fault_kind(f), KindAvailability(Share(), Share(), {}))
    return kinds, overlapping, unfaulted


def report(
    table: pa.Table, faults: list[dict[str, Any]], swarm_agents: dict[Any, list[str]]
) -> dict[str, Any]:
    """metrics.json's `availability_by_kind`."""
    kinds, overlapping, unfaulted = availability(table, faults, swarm_agents)
    out: dict[str, Any] = {
        kind: {
            "spared": found.spared.as_dict(),
            "spared_floor_pct": KIND_RULES[kind].spared_pct,
            "exposed": found.exposed.as_dict(),
            "exposed_floor_pct": KIND_RULES[kind].exposed_pct,
            "undesigned_failures": found.undesigned,
        }
        for kind, found in sorted(kinds.items())
    }
    out[OVERLAPPING] = {**overlapping.as_dict(), "gated": False}
    out[UNFAULTED] = {**unfaulted.as_dict(), "floor_pct": UNFAULTED_PCT}
    return out


def criteria(
    table: pa.Table, faults: list[dict[str, Any]], swarm_agents: dict[Any, list[str]]
) -> list[Criterion]:
    """Per kind: spared ≥ its floor (and exposed where the design promises a floor); every
    failure under one fault a designed one; requests under no fault ≥ `UNFAULTED_PCT`."""
    kinds, _, unfaulted = availability(table, faults, swarm_agents)
    out: list[Criterion] = []
    for kind, found in sorted(kinds.items()):
        rule = KIND_RULES[kind]
        out.append(
            checks.at_least(
                f"availability_{kind}",
                found.spared.pct,
                rule.spared_pct,
                evidence=Evidence(
                    f"requests a {kind} fault must not fail", found.spared.rows, rule.min_spared
                ),
                unit="%",
                description=f"requests in flight during a {kind} fault (or its {RECOVERY_GRACE_S:g} s "
                f"recovery) that it must not fail, that succeeded: {rule.why_spared}",
                section=SECTION,
            )
        )
        if rule.exposed_pct is not None:
            out.append(
                checks.at_least(
                    f"availability_{kind}_exposed",
                    found.exposed.pct,
                    rule.exposed_pct,
                    evidence=Evidence(
                        f"requests through a {kind} fault", found.exposed.rows, MIN_ROWS
                    ),
                    unit="%",
                    description=f"requests that went through the {kind} fault and succeeded: "
                    f"{rule.why_exposed}",
                    section=SECTION,
                )
            )
    undesigned = {
        f"{kind} {label}": n
        for kind, found in kinds.items()
        for label, n in found.undesigned.items()
    }
    failed = sum(
        k.spared.rows - k.spared.ok + k.exposed.rows - k.exposed.ok for k in kinds.values()
    )
    out.append(
        checks.equals(
            "failures_designed",
            float(sum(undesigned.values())),
            0,
            evidence=Evidence(
                "requests under exactly one fault",
                sum(k.spared.rows + k.exposed.rows for k in kinds.values()),
                MIN_ROWS,
            ),
            description=f"of {failed} failures under one fault, those with an error code the "
            "design does not give that fault"
            + (
                f" ({', '.join(f'{k}: {n}' for k, n in sorted(undesigned.items()))})"
                if undesigned
                else ""
            ),
            section=SECTION,
        )
    )
    out.append(
        checks.at_least(
            "availability_unfaulted",
            unfaulted.pct,
            UNFAULTED_PCT,
            evidence=Evidence("requests under no fault", unfaulted.rows, MIN_ROWS),
            unit="%",
            description="requests begun under no fault (nor its recovery grace) that succeeded: "
            "a fault's damage must not outlive it",
            section=SECTION,
        )
    )
    return out


def rows_of_kind(
    table: pa.Table, faults: list[dict[str, Any]], swarm_agents: dict[Any, list[str]], kind: str
) -> pa.Table:
    """The rows attributed to `kind` (for reports and tests)."""
    mask = [k == kind for k, _ in attribute(table, faults, swarm_agents)]
    return table.filter(pc.fill_null(pa.array(mask, pa.bool_()), False))
