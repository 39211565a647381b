"""Which namespaces a session may use.

Every agent owns the namespace named by its agent id. Agents that work together share explicitly
named team namespaces (`team:<name>`): with authentication on, the agent's token lists its teams
(claim `teams`); on an open server (local, no secret) any agent may join any team. Nothing else is
reachable: another agent's private namespace is refused with `Forbidden`.
"""

from __future__ import annotations

import re

from service.context import CallContext
from service.errors import Forbidden, InvalidParams

TEAM_PREFIX = "team:"
_TEAM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")


def is_team(namespace: str) -> bool:
    return namespace.startswith(TEAM_PREFIX)


def resolve_namespace(ctx: CallContext, requested: str | None) -> str:
    """The namespace a call acts on: the session's own, or a team it belongs to."""
    if requested is None or requested == "" or requested == ctx.namespace:
        return ctx.namespace
    if not is_team(requested):
        raise Forbidden(
            f"namespace {requested!r} belongs to another agent; use your own or a team namespace",
            {"namespace": requested},
        )
    name = requested[len(TEAM_PREFIX) :]
    if not _TEAM_NAME.match(name):
        raise InvalidParams(
            f"team namespace {requested!r} is malformed (team:<letters, digits, _ . ->)",
            field="namespace",
        )
    teams: list[str] | None = ctx.extra.get("teams")
    # teams is None on an open server (no auth): membership is not enforced there.
    if teams is not None and name not in teams and requested not in teams:
        raise Forbidden(
            f"agent {ctx.agent_id!r} is not a member of {requested!r}", {"namespace": requested}
        )
    return requested
