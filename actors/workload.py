"""Declarative workloads: what each agent sends, and when (pure, no I/O).

A workload is a weighted mix of JSON-RPC methods plus a pacing mode:

- closed loop: every agent sends `requests_per_agent` requests, each after the previous response
  and a think time; with `staggered_start` each agent's first send waits a random part of one
  think time, so the agents arrive spread out (as a running system sees them) instead of all at
  t=0 (a thundering herd no steady state has);
- open loop: sends are scheduled by a target-rate profile (ramp-up, sustain, ramp-down), never by
  previous responses, so a slow server cannot slow the sending (no coordinated omission). Latency
  is measured from the intended send time.

Tracked content (the coherency set check): with `topics: N` and team namespaces, a mix entry
marked `tracked: true` works on one of the team's N topics (`topic_text`): `store_memory` stores
exactly the topic's text, `execute_pattern` asks the memory-recall trigger about the topic
(`TRACKED_QUERY`) and `recall_memory` recalls it. A write's content is then the best possible
match for every later recall of its topic in that namespace, so such a read must include it.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Op = Literal["read", "write", "invalidate", "other"]

READ_METHODS = frozenset({"execute_pattern", "recall_memory", "get_task", "list_tasks"})
WRITE_METHODS = frozenset({"store_memory", "update_task", "create_task"})
INVALIDATE_METHODS = frozenset({"invalidate_cache"})
#: Methods that take a `namespace` param: a workload with `teams` sends them to a team namespace.
NAMESPACED_METHODS = frozenset(
    {"execute_pattern", "store_memory", "recall_memory", "invalidate_cache"}
)

#: The execute_pattern query of a tracked read: the recall_topic trigger recalls exactly {topic}.
TRACKED_QUERY = "what do we know about {topic}"
#: Subjects of tracked topics: unlike each other, so a topic's own content outranks the others'.
TOPIC_SUBJECTS: tuple[str, ...] = (
    "orchard irrigation schedule",
    "lighthouse lantern maintenance",
    "glacier survey results",
    "violin workshop inventory",
    "beekeeping hive census",
    "tram depot night shifts",
    "observatory telescope calibration",
    "bakery sourdough starter",
    "ferry timetable changes",
    "museum textile restoration",
    "vineyard frost protection",
    "choir rehearsal seating",
)
#: Methods a tracked mix entry may use.
TRACKED_METHODS = frozenset({"execute_pattern", "recall_memory", "store_memory"})

#: Query texts for pattern and memory methods when a workload names none.
DEFAULT_QUERIES: tuple[str, ...] = (
    "check the health of the database",
    "show the cache statistics",
    "recall what I stored about the deployment",
    "find my notes about redis failover",
    "list the status of all services",
    "summarise recent memories about the release",
)


def topic_text(namespace: str, index: int) -> str:
    """Tracked topic `index` of a namespace: lower case (the router may fold case), unique to the
    namespace (it contains it) and, within it, unlike every other topic (distinct subjects)."""
    subject = TOPIC_SUBJECTS[index % len(TOPIC_SUBJECTS)]
    return f"{subject} {index} of {namespace}".lower()


def op_for_method(method: str) -> Op:
    """The history `op` of a method: read, write, invalidate or other."""
    if method in READ_METHODS:
        return "read"
    if method in WRITE_METHODS:
        return "write"
    if method in INVALIDATE_METHODS:
        return "invalidate"
    return "other"


@dataclass(frozen=True)
class RequestSpec:
    """One request an agent will send, with the fields the history row needs."""

    method: str
    params: dict[str, Any]
    op: Op
    namespace: str
    key: str | None = None
    pattern_name: str | None = None
    #: Tracked content topic (see the module docstring), or None.
    topic: str | None = None


@dataclass(frozen=True)
class MethodWeight:
    """A method in the mix, its relative weight and extra params merged into the defaults;
    `tracked` entries work on the team's tracked topics."""

    method: str
    weight: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)
    tracked: bool = False

    def __post_init__(self) -> None:
        if not self.method:
            raise ValueError("a workload mix entry needs a method")
        if self.weight <= 0 or not math.isfinite(self.weight):
            raise ValueError(f"weight of {self.method!r} must be > 0, got {self.weight}")
        if self.tracked and self.method not in TRACKED_METHODS:
            raise ValueError(f"only {sorted(TRACKED_METHODS)} can be tracked, not {self.method!r}")


@dataclass(frozen=True)
class RateProfile:
    """Open-loop target rate (requests/s, whole run): linear ramp-up, sustain, linear ramp-down."""

    start_rate: float
    peak_rate: float
    ramp_up_s: float = 0.0
    sustain_s: float = 10.0
    ramp_down_s: float = 0.0

    def __post_init__(self) -> None:
        if self.start_rate < 0 or self.peak_rate <= 0:
            raise ValueError("rates must be start_rate >= 0 and peak_rate > 0")
        if min(self.ramp_up_s, self.sustain_s, self.ramp_down_s) < 0:
            raise ValueError("profile durations must not be negative")

    @property
    def duration_s(self) -> float:
        return self.ramp_up_s + self.sustain_s + self.ramp_down_s

    def scaled(self, factor: float) -> RateProfile:
        """The same shape at `factor` times the rate (one swarm's share of the total)."""
        return RateProfile(
            self.start_rate * factor,
            self.peak_rate * factor,
            self.ramp_up_s,
            self.sustain_s,
            self.ramp_down_s,
        )

    def segments(self) -> list[tuple[float, float, float]]:
        """(duration, rate at start, rate at end) of each non-empty segment."""
        parts = [
            (self.ramp_up_s, self.start_rate, self.peak_rate),
            (self.sustain_s, self.peak_rate, self.peak_rate),
            (self.ramp_down_s, self.peak_rate, self.start_rate),
        ]
        return [p for p in parts if p[0] > 0]

    def expected_count(self) -> float:
        """Requests the profile asks for over its whole duration (area under the rate)."""
        return sum(d * (a + b) / 2.0 for d, a, b in self.segments())


def open_loop_offsets(profile: RateProfile, max_requests: int = 1_000_000) -> list[float]:
    """Intended send times (seconds from phase start) following the rate profile exactly.

    The k-th send happens when the integral of the rate reaches k, so the schedule depends only on
    the clock, never on responses. Capped at `max_requests` to keep loops bounded.
    """
    offsets: list[float] = []
    t0 = 0.0
    done = 0.0  # integral of the rate up to t0
    for duration, r0, r1 in profile.segments():
        slope = (r1 - r0) / duration
        area = duration * (r0 + r1) / 2.0
        k = math.ceil(done - 1e-9)
        while k < done + area - 1e-9 and len(offsets) < max_requests:
            offsets.append(t0 + _time_for_area(k - done, r0, slope))
            k += 1
        t0 += duration
        done += area
    return offsets


def _time_for_area(area: float, r0: float, slope: float) -> float:
    """Smallest t with r0*t + slope*t²/2 == area (linear rate segment)."""
    if area <= 0:
        return 0.0
    if abs(slope) < 1e-12:
        return area / r0
    disc = r0 * r0 + 2.0 * slope * area
    return (-r0 + math.sqrt(max(disc, 0.0))) / slope


def split_round_robin(offsets: list[float], n_agents: int) -> list[list[float]]:
    """Deal sends to agents in turn: agent i gets sends i, i+n, i+2n, ..."""
    if n_agents < 1:
        raise ValueError("need at least one agent")
    return [offsets[i::n_agents] for i in range(n_agents)]


@dataclass(frozen=True)
class Workload:
    """A mix of methods and a pacing mode (closed loop, or open loop with a `rate` profile)."""

    mix: tuple[MethodWeight, ...] = (MethodWeight("ping"),)
    requests_per_agent: int = 3
    think_time_s: tuple[float, float] = (0.0, 0.0)
    rate: RateProfile | None = None
    queries: tuple[str, ...] = DEFAULT_QUERIES
    request_timeout_s: float = 10.0
    #: Hard ceiling on a phase's wall time; sends not started by then are skipped (and not counted).
    max_duration_s: float = 300.0
    seed: int = 0
    #: Team namespaces: 0 = every agent uses its own; N > 0 = namespaced methods go to one of N
    #: `team:<prefix>-<k>` namespaces, k = the agent's slot mod N (see `team_namespace`).
    teams: int = 0
    #: Team name prefix; empty = the run id (so runs never share a team namespace).
    team_prefix: str = ""
    #: Closed loop: when set, each agent sends a random count in
    #: [requests_per_agent, requests_per_agent_max] (plan 1.1: 3-7).
    requests_per_agent_max: int | None = None
    #: Tracked topics per team namespace (needed by `tracked` mix entries).
    topics: int = 0
    #: Tracked entries use the team namespace plus this suffix ("" = the team's own): a separate
    #: notes namespace keeps their writes from invalidating the rest of the team's answers.
    tracked_suffix: str = ""
    #: Closed loop: each agent's first send waits uniform(0, one think time) instead of going at
    #: t=0 (off: every agent fires at once, the burst plan 1.1's concurrency test wants).
    staggered_start: bool = False

    def __post_init__(self) -> None:
        if self.topics < 0:
            raise ValueError(f"topics must not be negative, got {self.topics}")
        if any(m.tracked for m in self.mix) and (self.topics <= 0 or self.teams <= 0):
            raise ValueError("tracked mix entries need teams > 0 and topics > 0")
        if self.requests_per_agent_max is not None and (
            self.requests_per_agent_max < self.requests_per_agent
        ):
            raise ValueError("requests_per_agent_max must be >= requests_per_agent")
        if self.teams < 0:
            raise ValueError(f"teams must not be negative, got {self.teams}")
        if not self.mix:
            raise ValueError("a workload needs at least one method in its mix")
        if self.requests_per_agent < 0:
            raise ValueError("requests_per_agent must not be negative")
        lo, hi = self.think_time_s
        if lo < 0 or hi < lo:
            raise ValueError(f"think_time_s must be 0 <= low <= high, got {self.think_time_s}")
        if not self.queries:
            raise ValueError("a workload needs at least one query text")

    @property
    def open_loop(self) -> bool:
        return self.rate is not None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Workload:
        """Build from a YAML-style mapping; unknown keys fail naming the key."""
        known = {
            "mix",
            "requests_per_agent",
            "think_time_ms",
            "rate",
            "queries",
            "request_timeout_s",
            "max_duration_s",
            "seed",
            "teams",
            "team_prefix",
            "topics",
            "tracked_suffix",
            "staggered_start",
        }
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown workload keys: {sorted(unknown)}")
        mix = tuple(_mix_entry(m) for m in _mix_items(data.get("mix", {"ping": 1})))
        count = data.get("requests_per_agent", 3)
        # requests_per_agent: N, or [low, high] for a random count per agent.
        low, high = (count, None) if isinstance(count, int | float) else (count[0], count[1])
        think = data.get("think_time_ms", [0, 0])
        if isinstance(think, int | float):
            think = [think, think]
        rate = data.get("rate")
        return cls(
            mix=mix,
            requests_per_agent=int(low),
            requests_per_agent_max=None if high is None else int(high),
            think_time_s=(float(think[0]) / 1000.0, float(think[1]) / 1000.0),
            rate=RateProfile(**rate) if rate else None,
            queries=tuple(data.get("queries", DEFAULT_QUERIES)),
            request_timeout_s=float(data.get("request_timeout_s", 10.0)),
            max_duration_s=float(data.get("max_duration_s", 300.0)),
            seed=int(data.get("seed", 0)),
            teams=int(data.get("teams", 0)),
            team_prefix=str(data.get("team_prefix", "")),
            topics=int(data.get("topics", 0)),
            tracked_suffix=str(data.get("tracked_suffix", "")),
            staggered_start=bool(data.get("staggered_start", False)),
        )

    def choose(self, rng: random.Random) -> MethodWeight:
        """Pick a mix entry by weight."""
        return rng.choices(self.mix, weights=[m.weight for m in self.mix], k=1)[0]

    def requests_for(self, rng: random.Random) -> int:
        """How many requests one agent sends in a closed-loop phase."""
        if self.requests_per_agent_max is None:
            return self.requests_per_agent
        return rng.randint(self.requests_per_agent, self.requests_per_agent_max)

    def think(self, rng: random.Random) -> float:
        """A think time in seconds drawn uniformly from the configured range."""
        lo, hi = self.think_time_s
        return lo if hi == lo else rng.uniform(lo, hi)

    def start_delay(self, rng: random.Random) -> float:
        """Seconds a closed-loop agent waits before its first send: 0, or with `staggered_start`
        a uniform part of one think time (the agents' phases spread like a running system's)."""
        if not self.staggered_start:
            return 0.0
        return rng.random() * self.think(rng)

    def team_namespace(self, run_id: str, slot: int) -> str | None:
        """The team namespace of the agent in `slot`, or None when the workload has no teams.

        A slot is the agent's rank among the agents starting on the same instance, so with
        `teams` ≤ agents per instance every team has members on every instance.
        """
        if self.teams <= 0:
            return None
        return f"team:{self.team_prefix or run_id}-{slot % self.teams}"

    def request(
        self, agent_id: str, seq: int, rng: random.Random, namespace: str | None = None
    ) -> RequestSpec:
        """The `seq`-th request of `agent_id` (deterministic for a seeded `rng`); `namespace`
        (a team) goes to methods that take one unless the mix entry sets its own."""
        entry = self.choose(rng)
        query = rng.choice(self.queries)
        topic = None
        if entry.tracked:
            if namespace is None:
                raise ValueError("a tracked request needs a team namespace")
            namespace += self.tracked_suffix
            topic = topic_text(namespace, rng.randrange(self.topics))
        return build_request(entry, agent_id, seq, query, namespace=namespace, topic=topic)


def _mix_items(raw: Any) -> list[Any]:
    if isinstance(raw, Mapping):
        return [{"method": k, "weight": v} for k, v in raw.items()]
    return list(raw)


def _mix_entry(raw: Any) -> MethodWeight:
    if isinstance(raw, str):
        return MethodWeight(raw)
    return MethodWeight(
        method=str(raw["method"]),
        weight=float(raw.get("weight", 1.0)),
        params=dict(raw.get("params", {})),
        tracked=bool(raw.get("tracked", False)),
    )


def build_request(
    entry: MethodWeight,
    agent_id: str,
    seq: int,
    query: str,
    *,
    namespace: str | None = None,
    topic: str | None = None,
) -> RequestSpec:
    """Default params for well-known methods, overridden by the mix entry's params; a `topic`
    (tracked entry) fixes the query or content last, since the content check relies on it."""
    method = entry.method
    params: dict[str, Any]
    key: str | None = None
    if method == "execute_pattern":
        params = {"query": query, "execution_mode": "balanced", "use_cache": True}
    elif method == "recall_memory":
        params = {"query": query, "limit": 5}
    elif method == "store_memory":
        params = {"content": f"{query} (note {seq} by {agent_id})"}
        key = query
    elif method == "create_task":
        params = {"title": f"task {seq} of {agent_id}"}
    elif method == "list_tasks":
        params = {}
    else:
        params = {}
    if namespace is not None and method in NAMESPACED_METHODS:
        params["namespace"] = namespace
    params.update(entry.params)
    if topic is not None:
        _track(method, params, topic)
        key = topic if method == "store_memory" else key
    if method in ("execute_pattern", "recall_memory"):
        # The key is the query actually sent (a mix entry may fix its own).
        key = str(params.get("query", query))
    namespace = str(params.get("namespace", agent_id))
    pattern_name = params.get("pattern_name")
    return RequestSpec(
        method=method,
        params=params,
        op=op_for_method(method),
        namespace=namespace,
        key=key,
        pattern_name=str(pattern_name) if pattern_name else None,
        topic=topic,
    )


def _track(method: str, params: dict[str, Any], topic: str) -> None:
    if method == "store_memory":
        params["content"] = topic
        params["shared"] = False  # a shared copy would be recalled by every namespace
    elif method == "recall_memory":
        params["query"] = topic
    elif method == "execute_pattern":
        params["query"] = TRACKED_QUERY.format(topic=topic)
    else:
        raise ValueError(f"{method!r} cannot be tracked")
