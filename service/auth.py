"""Agent tokens: HS256 JWTs whose subject is the agent id.

With `TMWS_AUTH_SECRET` set, every transport verifies one of these before any tool runs.
Every failure becomes `Unauthorized` with a message saying which check failed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from service.errors import Unauthorized

ALGORITHM = "HS256"
DEFAULT_TTL_S = 86_400
#: Clock skew tolerated between the issuing and the verifying machine.
LEEWAY_S = 30


@dataclass(frozen=True)
class AgentClaims:
    """What a verified token says: who the agent is and which team namespaces it may use."""

    agent_id: str
    teams: tuple[str, ...] = ()


def issue_token(
    secret: str, agent_id: str, ttl_s: int = DEFAULT_TTL_S, teams: Sequence[str] = ()
) -> str:
    """A signed token for `agent_id` (member of `teams`), valid for `ttl_s` seconds."""
    if not secret:
        raise ValueError("cannot issue a token without a secret (set TMWS_AUTH_SECRET)")
    now = int(time.time())
    claims = {"sub": agent_id, "iat": now, "exp": now + ttl_s, "teams": list(teams)}
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
    return AgentClaims(subject, tuple(teams))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header value, else None."""
    if not authorization:
        return None
    scheme, _, value = authorization.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()
