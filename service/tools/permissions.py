"""Who may do what beyond their own namespace: admin rights for operations that affect everyone."""

from __future__ import annotations

from service.auth import is_admin
from service.context import CallContext
from service.errors import AdminRequired

ADMIN_KEY = "admin"


def caller_is_admin(ctx: CallContext) -> bool:
    """The transport's verdict for this session, else the settings' policy for the agent id."""
    if ADMIN_KEY in ctx.extra:
        return bool(ctx.extra[ADMIN_KEY])
    return is_admin(ctx.services.settings, ctx.agent_id)


def require_admin(ctx: CallContext, operation: str) -> None:
    """AdminRequired (-32006) naming `operation` unless the caller is an admin."""
    if not caller_is_admin(ctx):
        raise AdminRequired(
            f"{operation} needs admin rights (a token with the admin claim, or TMWS_ADMIN_AGENTS)",
            {"operation": operation, "agent_id": ctx.agent_id},
        )
