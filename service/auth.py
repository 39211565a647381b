"""Agent tokens: HS256 JWTs whose subject is the agent id.

With `TMWS_AUTH_SECRET` set, every transport verifies one of these before any tool runs.
Every failure becomes `Unauthorized` with a message saying which check failed.

Admin rights (reload_patterns, invalidate_cache of "*" or of another agent's namespace): a token
with the claim `admin: true`, or an agent listed in TMWS_ADMIN_AGENTS. On an open server (no
secret) identities are not verified, so there TMWS_ADMIN_AGENTS unset means everyone is admin
(said in /health) and a list guards against accidents, not against attackers.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from service.config import Settings
from service.errors import Unauthorized
from service.sessions import check_agent_id

ALGORITHM = "HS256"
DEFAULT_TTL_S = 86_400
#: Clock skew tolerated between the issuing and the verifying machine.
LEEWAY_S = 30


@dataclass(frozen=True)
class AgentClaims:
    """What a verified token says: who the agent is and which team namespaces it may use."""

    agent_id: str
    teams: tuple[str, ...] = ()
    admin: bool = False


def issue_token(
    secret: str,
    agent_id: str,
    ttl_s: int = DEFAULT_TTL_S,
    teams: Sequence[str] = (),
    *,
    admin: bool = False,
) -> str:
    """A signed token for `agent_id` (member of `teams`, admin if asked), valid `ttl_s` seconds."""
    if not secret:
        raise ValueError("cannot issue a token without a secret (set TMWS_AUTH_SECRET)")
    check_agent_id(agent_id)
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": agent_id,
        "iat": now,
        "exp": now + ttl_s,
        "teams": list(teams),
    }
    if admin:
        claims["admin"] = True
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_token(secret: str, token: str | None, expected_agent_id: str | None) -> str:
    """The token's agent id, after checking signature, expiry and (if given) the expected subject."""
    return verify_claims(secret, token, expected_agent_id).agent_id


def verify_claims(secret: str, token: str | None, expected_agent_id: str | None) -> AgentClaims:
    """The token's claims, after checking signature, expiry and (if given) the expected subject."""
    if not token:
        raise Unauthorized("missing token (pass ?token=… or an Authorization: Bearer header)")
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            leeway=LEEWAY_S,
            options={"require": ["sub", "exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token expired") from None
    except jwt.InvalidSignatureError:
        raise Unauthorized("bad token signature") from None
    except jwt.MissingRequiredClaimError as exc:
        raise Unauthorized(f"token lacks the {exc.claim!r} claim") from None
    except jwt.InvalidTokenError as exc:
        raise Unauthorized(f"malformed token: {exc}") from None
    subject = claims["sub"]
    if expected_agent_id is not None and subject != expected_agent_id:
        raise Unauthorized(
            f"token subject {subject!r} does not match agent_id {expected_agent_id!r}",
            {"agent_id": expected_agent_id},
        )
    teams = claims.get("teams") or []
    if not isinstance(teams, list) or not all(isinstance(t, str) for t in teams):
        raise Unauthorized("token claim 'teams' must be a list of team names")
    admin = claims.get("admin", False)
    if not isinstance(admin, bool):
        raise Unauthorized("token claim 'admin' must be true or false")
    return AgentClaims(subject, tuple(teams), admin)


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header value, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def is_admin(settings: Settings, agent_id: str, *, claimed: bool = False) -> bool:
    """Whether `agent_id` (whose token claimed admin or not) has admin rights."""
    if claimed and settings.auth_enabled:
        return True
    admins = settings.security.admin_agents
    if admins is None:
        return not settings.auth_enabled  # open server, no list: everyone (said in /health)
    return agent_id in admins


def admin_policy(settings: Settings) -> str:
    """Who is admin, in words, for /health and the start-up log."""
    admins = settings.security.admin_agents
    if not settings.auth_enabled:
        if admins is None:
            return "everyone (open server and TMWS_ADMIN_AGENTS unset)"
        return f"TMWS_ADMIN_AGENTS ({len(admins)} agents; identities unverified: open server)"
    listed = f" or TMWS_ADMIN_AGENTS ({len(admins)} agents)" if admins else ""
    return f"tokens with the admin claim{listed}"


#: `token=…` in a query string and `Bearer …` in a header, wherever they end up in a log line.
_TOKEN_PATTERNS = (
    re.compile(r"(?i)(\btoken=)[^&\s\"']+"),
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]+"),
)


def redact(text: str) -> str:
    """`text` with every bearer token replaced by REDACTED."""
    lowered = text.lower()
    if "token=" not in lowered and "bearer" not in lowered:
        return text
    for pattern in _TOKEN_PATTERNS:
        text = pattern.sub(r"\1REDACTED", text)
    return text
