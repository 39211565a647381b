"""Namespace resolution: own namespace, team namespaces, never another agent's."""

from __future__ import annotations

import pytest

from service.auth import issue_token, verify_claims
from service.config import Settings
from service.context import CallContext, Services
from service.embedding import Embedder
from service.errors import Forbidden, InvalidParams
from service.namespaces import resolve_namespace
from service.tools.registry import ToolRegistry

SECRET = "a-test-secret-of-at-least-32-bytes!"


def ctx(teams: list[str] | None = None) -> CallContext:
    extra = {} if teams is None else {"teams": teams}
    services = Services(settings=Settings(), tools=ToolRegistry(), embedder=Embedder())
    return CallContext(
        agent_id="alice", session_id="s", instance_id="i", services=services, extra=extra
    )


def test_default_is_own_namespace() -> None:
    assert resolve_namespace(ctx(), None) == "alice"
    assert resolve_namespace(ctx(), "alice") == "alice"


def test_other_agents_namespace_is_forbidden() -> None:
    with pytest.raises(Forbidden, match="belongs to another agent"):
        resolve_namespace(ctx(), "bob")


def test_open_server_allows_any_team_but_auth_enforces_membership() -> None:
    assert resolve_namespace(ctx(None), "team:ops") == "team:ops"
    assert resolve_namespace(ctx(["ops"]), "team:ops") == "team:ops"
    with pytest.raises(Forbidden, match="not a member"):
        resolve_namespace(ctx(["ops"]), "team:finance")


def test_malformed_team_names_the_field() -> None:
    with pytest.raises(InvalidParams) as info:
        resolve_namespace(ctx(), "team:bad name!")
    assert info.value.field == "namespace"


def test_token_carries_teams() -> None:
    token = issue_token(SECRET, "alice", teams=["ops", "qa"])
    claims = verify_claims(SECRET, token, "alice")
    assert claims.teams == ("ops", "qa")
