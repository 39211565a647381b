"""Per-connection sessions, the per-agent connection limit and a token-bucket rate limiter.

Pure bookkeeping with no I/O: transports open a `Session` when a socket is accepted and close it
when the socket ends; the registry refuses an agent's connection beyond its limit.
"""

from __future__ import annotations

import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.errors import ConnectionLimit, InvalidParams

#: Agent ids become namespaces and log fields: keep them short and free of separators that matter.
AGENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$")


def check_agent_id(agent_id: str | None) -> str:
    """Return `agent_id` if well formed, else raise InvalidParams naming `agent_id`."""
    if not agent_id:
        raise InvalidParams("agent_id is required", field="agent_id")
    if not AGENT_ID_PATTERN.match(agent_id):
        raise InvalidParams(
            f"agent_id {agent_id[:40]!r} is invalid (1-128 of A-Z a-z 0-9 _ . : @ -, "
            "starting with a letter or digit)",
            field="agent_id",
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
    """Open sessions by agent, enforcing at most `max_per_agent` at once."""

    def __init__(self, max_per_agent: int) -> None:
        if max_per_agent < 1:
            raise ValueError(f"max_per_agent must be >= 1, got {max_per_agent}")
        self.max_per_agent = max_per_agent
        self._sessions: dict[str, Session] = {}
        self._per_agent: Counter[str] = Counter()
        self.refused = 0
        #: Called with (agent_id, open sessions of that agent) after every open and close.
        self.listeners: list[Callable[[str, int], None]] = []

    def open(self, agent_id: str) -> Session:
        """Register a new session, or raise ConnectionLimit if the agent is at its limit."""
        # Single-threaded asyncio: check and increment happen without an await between them.
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
            "refused": self.refused,
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
