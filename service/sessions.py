"""Sessions, connection limits (per agent and for the server) and token-bucket rate limiters.

Pure bookkeeping with no I/O: transports open a `Session` when a socket is accepted and close it
when the socket ends; the registry refuses a connection beyond the agent's or the server's limit,
and holds one token bucket per agent that every transport (each socket, `/mcp`) draws from.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.errors import ConnectionLimit, InvalidParams, RateLimited

#: Agent ids become namespaces and log fields. No ':' at all: namespaces with a prefix
#: (`team:<name>`) are shared ones, and an agent called `team:x` would own that team's rows.
AGENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")
AGENT_ID_RULE = "1-128 of A-Z a-z 0-9 _ . @ -, starting with a letter or digit"


def check_agent_id(agent_id: str | None) -> str:
    """Return `agent_id` if well formed, else raise InvalidParams naming `agent_id`."""
    if not agent_id:
        raise InvalidParams("agent_id is required", field="agent_id")
    if not AGENT_ID_PATTERN.match(agent_id):
        raise InvalidParams(
            f"agent_id {agent_id[:40]!r} is invalid ({AGENT_ID_RULE})", field="agent_id"
        )
    return agent_id


@dataclass
class Session:
    """One open connection of one agent."""

    agent_id: str
    session_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    opened_at: float = field(default_factory=time.time)
    last_activity: float = field(default_factory=time.monotonic)
    requests: int = 0
    #: Per-session state tools may keep (active persona, MCP client info, ...).
    extra: dict[str, Any] = field(default_factory=dict)

    def touch(self) -> None:
        """Record one received message."""
        self.requests += 1
        self.last_activity = time.monotonic()


class SessionRegistry:
    """Open sessions by agent (at most `max_per_agent` each, `max_total` in all) and the
    per-agent rate limiter."""

    def __init__(
        self,
        max_per_agent: int,
        *,
        max_total: int | None = None,
        agent_rate_per_s: float = 0.0,
        agent_rate_burst: int = 1,
    ) -> None:
        if max_per_agent < 1:
            raise ValueError(f"max_per_agent must be >= 1, got {max_per_agent}")
        if max_total is not None and max_total < 1:
            raise ValueError(f"max_total must be >= 1, got {max_total}")
        self.max_per_agent = max_per_agent
        self.max_total = max_total
        self._sessions: dict[str, Session] = {}
        self._per_agent: Counter[str] = Counter()
        self.refused = 0
        self.rates = AgentRateLimiter(agent_rate_per_s, max(1, agent_rate_burst))
        #: Called with (agent_id, open sessions of that agent) after every open and close.
        self.listeners: list[Callable[[str, int], None]] = []

    @classmethod
    def from_limits(cls, limits: Any) -> SessionRegistry:
        """The registry a server with `limits` (a `LimitSettings`) runs with."""
        return cls(
            limits.max_connections_per_agent,
            max_total=limits.max_connections,
            agent_rate_per_s=limits.agent_rate_per_s,
            agent_rate_burst=limits.agent_rate_burst,
        )

    def open(self, agent_id: str) -> Session:
        """Register a new session, or raise ConnectionLimit if the agent or server is full."""
        # Single-threaded asyncio: check and increment happen without an await between them.
        if self.max_total is not None and len(self._sessions) >= self.max_total:
            self.refused += 1
            raise ConnectionLimit(
                f"server already has {len(self._sessions)} open connections "
                f"(limit {self.max_total})",
                {"scope": "server", "limit": self.max_total},
            )
        if self._per_agent[agent_id] >= self.max_per_agent:
            self.refused += 1
            raise ConnectionLimit(
                f"agent {agent_id!r} already has {self._per_agent[agent_id]} open connections "
                f"(limit {self.max_per_agent})",
                {"agent_id": agent_id, "limit": self.max_per_agent},
            )
        session = Session(agent_id=agent_id)
        self._sessions[session.session_id] = session
        self._per_agent[agent_id] += 1
        self._notify(agent_id)
        return session

    def close(self, session: Session) -> None:
        """Forget `session`; closing twice is harmless."""
        if self._sessions.pop(session.session_id, None) is None:
            return
        self._per_agent[session.agent_id] -= 1
        if self._per_agent[session.agent_id] <= 0:
            del self._per_agent[session.agent_id]
        self._notify(session.agent_id)

    def _notify(self, agent_id: str) -> None:
        count = self._per_agent.get(agent_id, 0)
        for listener in self.listeners:
            listener(agent_id, count)

    def count(self, agent_id: str | None = None) -> int:
        """Open sessions of one agent, or of all agents."""
        return len(self._sessions) if agent_id is None else self._per_agent.get(agent_id, 0)

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def sessions(self) -> list[Session]:
        return list(self._sessions.values())

    def stats(self) -> dict[str, Any]:
        """Figures for /health."""
        return {
            "open": len(self._sessions),
            "agents": len(self._per_agent),
            "max_per_agent": self.max_per_agent,
            "max_total": self.max_total,
            "refused": self.refused,
            "rate_limited_agent": self.rates.refused,
        }


class TokenBucket:
    """Classic token bucket: `rate` tokens a second, holding at most `burst`.

    A rate of 0 means unlimited (TMWS_RATE_PER_S=0 switches rate limiting off).
    """

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate < 0 or burst < 1:
            raise ValueError(f"rate must be >= 0 and burst >= 1, got rate={rate} burst={burst}")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    @property
    def last_refill(self) -> float:
        """Clock reading of the last take (the bucket refills from there)."""
        return self._last

    def try_take(self, n: int = 1) -> bool:
        """Take `n` tokens if available; never blocks."""
        if self.rate == 0:
            return True
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def retry_after_s(self, n: int = 1) -> float:
        """Seconds until `n` tokens will be available (0 if they are now)."""
        if self.rate == 0 or self._tokens >= n:
            return 0.0
        return (n - self._tokens) / self.rate


class AgentRateLimiter:
    """One token bucket per agent id, shared by every socket and HTTP request of that agent.

    Buckets of agents that have been quiet long enough to be full again carry no information and
    are dropped, so the map stays as large as the set of recently active agents.
    """

    #: Look for droppable buckets once the map has grown by this many since the last sweep.
    _SWEEP_EVERY = 1024

    def __init__(
        self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._sweep_at = self._SWEEP_EVERY
        self.refused = 0

    def take(self, agent_id: str, n: int = 1) -> RateLimited | None:
        """Charge `n` requests to the agent; the refusal (not raised) if its bucket is empty."""
        if self.rate == 0:
            return None
        bucket = self._buckets.get(agent_id)
        if bucket is None:
            if len(self._buckets) >= self._sweep_at:
                self._sweep()
            bucket = self._buckets[agent_id] = TokenBucket(self.rate, self.burst, clock=self._clock)
        if bucket.try_take(n):
            return None
        self.refused += 1
        return RateLimited(
            f"agent {agent_id!r} exceeded its rate limit of {self.rate:g} requests/s "
            f"(burst {self.burst}) across all its connections",
            {"scope": "agent", "retry_after_s": round(bucket.retry_after_s(n), 4)},
        )

    def _sweep(self) -> None:
        full_after = self.burst / self.rate
        now = self._clock()
        for agent_id, bucket in list(self._buckets.items()):
            if now - bucket.last_refill >= full_after:
                del self._buckets[agent_id]
        self._sweep_at = len(self._buckets) + self._SWEEP_EVERY
