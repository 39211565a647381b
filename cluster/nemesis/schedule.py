"""Fault schedules: parse `KIND:TARGET[=ARG]@START+DURATION, ...` (or a YAML file) and draw a
seeded random one that covers every fault category.

Times are seconds from the start of the schedule (the load phase of the experiment that runs it).
Kinds, their category, target and argument:

| kind | category | target | argument |
|---|---|---|---|
| `pause` | process | `redis`, `postgres` | — (SIGSTOP … SIGCONT) |
| `stop` | process | `redis`, `postgres` | — (stop … restart on the same port) |
| `kill` | process | `inst-N` | — (kill -9 of the instance; Ray restarts it) |
| `latency` | network | `inst-N/redis`, `inst-N/postgres` | `50ms±20ms` (`+-` or `~` for ±) |
| `bandwidth` | network | `inst-N/…` | `64kbps`, `1mbps`, `8000bps` |
| `reset` | network | `inst-N/…` | — (open connections reset, new ones refused) |
| `partition` | network | `inst-N/…` | — (blackhole: connections held open, nothing answers) |
| `drop-invalidations` | invalidation | `inst-N` | fraction `0.5` or `50%` |
| `delay-invalidations` | invalidation | `inst-N` | `1500ms` or `1500ms/0.5` (delay/fraction) |
| `clock` | clock | `swarm-N` | `+250ms`, `-1s` (the whole run; no `@`) |

`redis:pause@10s+5s` (target first) is accepted as `pause:redis@10s+5s`.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CATEGORIES = ("process", "network", "invalidation", "clock")
SERVERS = ("redis", "postgres")
KIND_CATEGORY: dict[str, str] = {
    "pause": "process",
    "stop": "process",
    "kill": "process",
    "latency": "network",
    "bandwidth": "network",
    "reset": "network",
    "partition": "network",
    "drop-invalidations": "invalidation",
    "delay-invalidations": "invalidation",
    "clock": "clock",
}
KINDS = tuple(KIND_CATEGORY)
_NO_ARG = {"pause", "stop", "kill", "reset", "partition"}
_DURATION = re.compile(r"^\s*([+-]?\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(bps|kbps|mbps|gbps)\s*$", re.IGNORECASE)
_INSTANCE = re.compile(r"^inst-(\d+)$")
_SWARM = re.compile(r"^swarm-(\d+)$")
_LINK = re.compile(r"^inst-(\d+)/(redis|postgres)$")
_RATE_UNITS = {"bps": 1, "kbps": 1_000, "mbps": 1_000_000, "gbps": 1_000_000_000}


class ScheduleError(ValueError):
    """A schedule that cannot be parsed or does not fit the run (the message says which item)."""


def parse_seconds(text: str, what: str = "time") -> float:
    """`10s`, `500ms`, `1.5`, `2m` -> seconds (a bare number is seconds)."""
    match = _DURATION.match(text)
    if not match:
        raise ScheduleError(f"bad {what} {text!r} (e.g. 10s, 500ms)")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


@dataclass(frozen=True)
class Fault:
    """One scheduled fault; `params` holds the parsed argument (ms, bytes/s, fractions)."""

    kind: str
    target: str
    start_s: float = 0.0
    duration_s: float = 0.0
    params: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    @property
    def category(self) -> str:
        return KIND_CATEGORY[self.kind]

    @property
    def end_s(self) -> float:
        return self.start_s + self.duration_s

    def param(self, name: str, default: float = 0.0) -> float:
        return dict(self.params).get(name, default)

    @property
    def instance_index(self) -> int | None:
        match = _INSTANCE.match(self.target.split("/")[0])
        return int(match.group(1)) if match else None

    @property
    def swarm_index(self) -> int | None:
        match = _SWARM.match(self.target)
        return int(match.group(1)) if match else None

    @property
    def server(self) -> str | None:
        """The server a process or network fault is about (`redis`, `postgres`)."""
        return self.target.split("/")[-1] if self.target.split("/")[-1] in SERVERS else None

    def arg_text(self) -> str:
        p = dict(self.params)
        if self.kind == "latency":
            return f"{p['latency_ms']:g}ms±{p.get('jitter_ms', 0):g}ms"
        if self.kind == "bandwidth":
            return f"{p['bytes_per_s'] * 8 / 1000:g}kbps"
        if self.kind == "drop-invalidations":
            return f"{p['fraction']:g}"
        if self.kind == "delay-invalidations":
            return f"{p['delay_ms']:g}ms/{p.get('fraction', 1.0):g}"
        if self.kind == "clock":
            return f"{p['skew_ms']:+g}ms"
        return ""

    def text(self) -> str:
        """The canonical spelling (parses back to an equal fault)."""
        arg = self.arg_text()
        head = f"{self.kind}:{self.target}" + (f"={arg}" if arg else "")
        if self.kind == "clock":
            return head
        return f"{head}@{self.start_s:g}s+{self.duration_s:g}s"


@dataclass(frozen=True)
class Schedule:
    """Faults in start order, and the seed that drew them (None: written by hand)."""

    faults: tuple[Fault, ...]
    seed: int | None = None

    def text(self) -> str:
        return ", ".join(f.text() for f in self.faults)

    def categories(self) -> set[str]:
        return {f.category for f in self.faults}

    @property
    def span_s(self) -> float:
        return max((f.end_s for f in self.faults), default=0.0)

    def timed(self) -> list[Fault]:
        """Faults applied and healed during the load (every kind but clock)."""
        return [f for f in self.faults if f.kind != "clock"]

    def clock_skews_ms(self) -> dict[int, float]:
        """Swarm index -> skew (ms) of the clock faults (they span the whole run)."""
        return {f.swarm_index: f.param("skew_ms") for f in self.faults if f.kind == "clock"}  # type: ignore[misc]

    def validate(self, instances: int, swarms: int) -> Schedule:
        """Raise `ScheduleError` naming the first fault whose target the run does not have."""
        for f in self.faults:
            index = f.swarm_index if f.kind == "clock" else f.instance_index
            limit = swarms if f.kind == "clock" else instances
            if index is not None and index >= limit:
                unit = "swarm" if f.kind == "clock" else "instance"
                raise ScheduleError(
                    f"{f.text()}: the run has {limit} {unit}s ({unit} indexes 0..{limit - 1})"
                )
        return self


def _parse_arg(kind: str, raw: str, item: str) -> tuple[tuple[str, float], ...]:
    if kind in _NO_ARG:
        if raw:
            raise ScheduleError(f"{item}: {kind} takes no argument")
        return ()
    if not raw:
        raise ScheduleError(f"{item}: {kind} needs an argument (see the schedule syntax)")
    if kind == "latency":
        parts = re.split(r"±|\+-|~", raw)
        if len(parts) > 2:
            raise ScheduleError(f"{item}: latency is DELAY[±JITTER], e.g. 50ms±20ms")
        latency = parse_seconds(parts[0], "latency") * 1000
        jitter_text = parts[1] if len(parts) == 2 else "0"
        if re.fullmatch(r"\s*\d+(\.\d+)?\s*", jitter_text):
            jitter_text += "ms"  # 50ms±20: the jitter in the delay's unit
        jitter = parse_seconds(jitter_text, "jitter") * 1000
        if latency < 0 or jitter < 0:
            raise ScheduleError(f"{item}: latency and jitter must be >= 0")
        return (("latency_ms", latency), ("jitter_ms", jitter))
    if kind == "bandwidth":
        match = _RATE.match(raw)
        if not match:
            raise ScheduleError(f"{item}: bandwidth is a rate, e.g. 64kbps or 1mbps")
        bits = float(match.group(1)) * _RATE_UNITS[match.group(2).lower()]
        if bits < 8:
            raise ScheduleError(f"{item}: bandwidth below 8bps")
        return (("bytes_per_s", bits / 8),)
    if kind == "drop-invalidations":
        return (("fraction", _fraction(raw, item)),)
    if kind == "delay-invalidations":
        delay_text, _, fraction_text = raw.partition("/")
        delay = parse_seconds(delay_text, "delay") * 1000
        if delay <= 0:
            raise ScheduleError(f"{item}: the delay must be > 0")
        fraction = _fraction(fraction_text, item) if fraction_text else 1.0
        return (("delay_ms", delay), ("fraction", fraction))
    # clock
    if not raw.strip().startswith(("+", "-")):
        raise ScheduleError(f"{item}: a clock skew has a sign, e.g. +250ms or -1s")
    return (("skew_ms", parse_seconds(raw, "skew") * 1000),)


def _fraction(raw: str, item: str) -> float:
    text = raw.strip()
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ScheduleError(f"{item}: {raw!r} is not a fraction (0.5 or 50%)") from None
    if not 0 < value <= 1:
        raise ScheduleError(f"{item}: fraction {value:g} is not in (0, 1]")
    return value


def _check_target(kind: str, target: str, item: str) -> None:
    ok = {
        "process": target in SERVERS or (kind == "kill" and bool(_INSTANCE.match(target))),
        "network": bool(_LINK.match(target)),
        "invalidation": bool(_INSTANCE.match(target)),
        "clock": bool(_SWARM.match(target)),
    }[KIND_CATEGORY[kind]]
    if kind in ("pause", "stop") and target not in SERVERS:
        ok = False
    if not ok:
        wanted = {
            "pause": "redis or postgres",
            "stop": "redis or postgres",
            "kill": "inst-N",
            "clock": "swarm-N",
            "drop-invalidations": "inst-N",
            "delay-invalidations": "inst-N",
        }.get(kind, "inst-N/redis or inst-N/postgres")
        raise ScheduleError(f"{item}: {kind} targets {wanted}, not {target!r}")


def parse_fault(item: str) -> Fault:
    """One `KIND:TARGET[=ARG][@START+DURATION]` item."""
    text = item.strip()
    head, at, when = text.partition("@")
    name, colon, rest = head.partition(":")
    if not colon:
        raise ScheduleError(f"{item!r}: expected KIND:TARGET[=ARG]@START+DURATION")
    name, rest = name.strip().lower(), rest.strip()
    target, _, raw = rest.partition("=")
    target = target.strip().lower()
    if name in SERVERS and target in ("pause", "stop"):
        name, target = target, name  # `redis:pause` reads as `pause:redis`
    if name not in KIND_CATEGORY:
        raise ScheduleError(f"{item!r}: unknown fault kind {name!r} (one of {', '.join(KINDS)})")
    _check_target(name, target, item)
    params = _parse_arg(name, raw.strip(), item)
    if name == "clock":
        if at:
            raise ScheduleError(f"{item!r}: a clock skew spans the run; give no @START+DURATION")
        return Fault(name, target, params=params)
    if not at:
        raise ScheduleError(f"{item!r}: missing @START+DURATION (e.g. @10s+5s)")
    start_text, plus, duration_text = when.partition("+")
    if not plus and name != "kill":
        raise ScheduleError(f"{item!r}: missing +DURATION after @{start_text}")
    start = parse_seconds(start_text, "start")
    duration = parse_seconds(duration_text, "duration") if plus else 0.0
    if start < 0 or duration < 0 or (duration == 0 and name != "kill"):
        raise ScheduleError(f"{item!r}: start must be >= 0 and duration > 0")
    return Fault(name, target, start, duration, params)


def parse_schedule(text: str, seed: int | None = None) -> Schedule:
    """A comma- or newline-separated list of faults (commas inside `=ARG` are not allowed)."""
    items = [p for p in re.split(r"[,\n]", text) if p.strip() and not p.strip().startswith("#")]
    if not items:
        raise ScheduleError("empty fault schedule")
    faults = sorted((parse_fault(p) for p in items), key=lambda f: (f.start_s, f.kind, f.target))
    return Schedule(tuple(faults), seed)


def load_schedule(spec: str | Path) -> Schedule:
    """`--nemesis` value: a YAML file (`faults:` list of items, optional `seed:`) or the text."""
    path = Path(spec)
    if str(spec).endswith((".yaml", ".yml")):
        if not path.is_file():
            raise ScheduleError(f"no such nemesis file: {path}")
        data: Any = yaml.safe_load(path.read_text()) or {}
        faults = data.get("faults") if isinstance(data, dict) else None
        if not isinstance(faults, list) or not all(isinstance(f, str) for f in faults):
            raise ScheduleError(f"{path}: expected `faults:` as a list of fault strings")
        return parse_schedule("\n".join(faults), data.get("seed"))
    return parse_schedule(str(spec))


# -- seeded generation ---------------------------------------------------------------------------


#: Quiet time after each drawn timed fault before the next may start: the 5 s recovery grace
#: chaos gives a heal (instances notice a healed server at their next health check and recover)
#: plus 1 s for requests in flight across the boundary, so a request of a drawn schedule is under
#: at most one fault.
HEAL_GAP_S = 6.0
#: What a `stop` adds to its duration in a drawn schedule: the restart (PostgreSQL healed ~5 s
#: after its planned end in one run here).
RESTART_BUDGET_S = 5.0
#: What a `kill` occupies of a drawn schedule (its duration is 0: it is healed when Ray has
#: restarted the instance and every instance answers again; ~8 s to the database connect of the
#: new process on this 2-core machine, under load). A restart during a database outage fails
#: (the server needs PostgreSQL to start), so nothing may follow a kill this soon.
KILL_BUDGET_S = 15.0
#: Shortest duration a drawn fault is shrunk to when the span is tight.
MIN_DRAWN_S = 2.0


def generate(
    seed: int,
    span_s: float,
    instances: int,
    swarms: int,
    *,
    categories: Iterable[str] = CATEGORIES,
    per_category: int = 1,
    kill: bool = True,
) -> Schedule:
    """A random schedule drawn from `seed` alone (same arguments, same schedule).

    Every category gets `per_category` faults. The timed ones run ONE AT A TIME, in a random
    order, each followed by `HEAL_GAP_S` of quiet (Jepsen's default nemesis does the same): a
    request is then under at most one fault, so each kind's availability and each failure is
    that fault's alone. Overlap stays possible in a hand-written schedule (`--nemesis`); chaos
    reports requests under two faults as "overlapping" and gates none of them. Every fault ends
    by `span_s` (durations shrink towards `MIN_DRAWN_S` if the span is tight), so the tail of
    the load runs healed. Clock skews span the run (they change no answer of the service).
    """
    if span_s < 10:
        raise ScheduleError(f"a generated schedule needs a span of at least 10 s (got {span_s:g})")
    rng = random.Random(seed)
    timed: list[Fault] = []
    wanted = list(dict.fromkeys(categories))
    process_kinds: Sequence[tuple[str, str]] = [
        ("pause", "redis"),
        ("stop", "redis"),
        ("pause", "postgres"),
        ("stop", "postgres"),
    ] + ([("kill", "")] if kill else [])
    if "process" in wanted:
        for _ in range(per_category):
            kind, target = rng.choice(list(process_kinds))
            if kind == "kill":
                target = f"inst-{rng.randrange(instances)}"
            duration = 0.0 if kind == "kill" else round(rng.uniform(2.0, 6.0), 1)
            timed.append(Fault(kind, target, 0.0, duration))
    if "network" in wanted:
        for _ in range(per_category):
            kind = rng.choice(["latency", "bandwidth", "reset", "partition"])
            target = f"inst-{rng.randrange(instances)}/{rng.choice(SERVERS)}"
            params: tuple[tuple[str, float], ...] = ()
            if kind == "latency":
                params = (("latency_ms", rng.choice([20, 50, 100, 200])), ("jitter_ms", 20))
            elif kind == "bandwidth":
                params = (("bytes_per_s", rng.choice([8_000, 32_000, 128_000])),)
            timed.append(Fault(kind, target, 0.0, round(rng.uniform(2.0, 8.0), 1), params))
    if "invalidation" in wanted:
        for _ in range(per_category):
            kind = rng.choice(["drop-invalidations", "delay-invalidations"])
            if kind == "drop-invalidations":
                params = (("fraction", rng.choice([0.25, 0.5, 1.0])),)
            else:
                params = (("delay_ms", rng.choice([500, 1500, 3000])), ("fraction", 1.0))
            target = f"inst-{rng.randrange(instances)}"
            timed.append(Fault(kind, target, 0.0, round(rng.uniform(3.0, 10.0), 1), params))
    faults = _one_at_a_time(rng, timed, span_s)
    if "clock" in wanted:
        for index in rng.sample(range(swarms), min(swarms, per_category)):
            skew = rng.choice([-1, 1]) * rng.choice([150, 400, 1500])
            faults.append(Fault("clock", f"swarm-{index}", params=(("skew_ms", float(skew)),)))
    faults.sort(key=lambda f: (f.start_s, f.kind, f.target))
    return Schedule(tuple(faults), seed).validate(instances, swarms)


def _occupies(f: Fault) -> float:
    if f.kind == "kill":
        return KILL_BUDGET_S
    return f.duration_s + (RESTART_BUDGET_S if f.kind == "stop" else 0.0)


def _one_at_a_time(rng: random.Random, timed: list[Fault], span_s: float) -> list[Fault]:
    """Shuffle `timed` and lay it out in `span_s`: each fault, then `HEAL_GAP_S`, then the next;
    the slack left is spread at random over the gaps (and before the first)."""
    rng.shuffle(timed)
    lead = round(0.05 * span_s, 1)
    fixed = sum(_occupies(f) - f.duration_s for f in timed) + HEAL_GAP_S * len(timed)
    room = span_s - lead - fixed
    drawn = sum(f.duration_s for f in timed)
    floor = MIN_DRAWN_S * sum(1 for f in timed if f.kind != "kill")
    if room < floor:
        raise ScheduleError(
            f"a span of {span_s:g} s cannot hold {len(timed)} faults one at a time "
            f"({HEAL_GAP_S:g} s apart); give a longer span or fewer faults per category"
        )
    if drawn > room:  # shrink every duration by the same share, none below MIN_DRAWN_S
        share = (room - floor) / (drawn - floor) if drawn > floor else 0.0
        timed = [
            f
            if f.kind == "kill"
            else Fault(
                f.kind,
                f.target,
                0.0,
                math.floor((MIN_DRAWN_S + (f.duration_s - MIN_DRAWN_S) * share) * 10) / 10,
                f.params,
            )
            for f in timed
        ]
    slack = max(0.0, room - sum(f.duration_s for f in timed))
    cuts = sorted(rng.uniform(0.0, slack) for _ in timed)
    shares = [b - a for a, b in itertools.pairwise([0.0, *cuts])]
    out, at = [], lead
    for f, extra in zip(timed, shares, strict=True):
        start = math.floor((at + extra) * 10) / 10
        out.append(Fault(f.kind, f.target, start, f.duration_s, f.params))
        at = start + _occupies(f) + HEAL_GAP_S
    return out
