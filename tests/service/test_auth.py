"""Agent tokens: issue, verify, and each way verification fails."""

from __future__ import annotations

import jwt
import pytest

from service.auth import bearer_token, issue_token, verify_token
from service.errors import Unauthorized

SECRET = "test-secret-that-is-long-enough-for-hs256"


def test_round_trip() -> None:
    token = issue_token(SECRET, "agent-7")
    assert verify_token(SECRET, token, "agent-7") == "agent-7"
    assert verify_token(SECRET, token, None) == "agent-7"
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["sub"] == "agent-7"
    assert claims["exp"] - claims["iat"] == 86_400


@pytest.mark.parametrize(
    ("token", "expected", "message"),
    [
        (None, "agent-7", "missing token"),
        ("", "agent-7", "missing token"),
        ("not.a.jwt", "agent-7", "malformed token"),
        (
            issue_token("another-secret-of-sufficient-length!!", "agent-7"),
            "agent-7",
            "bad token signature",
        ),
        (issue_token(SECRET, "agent-7", ttl_s=-3600), "agent-7", "token expired"),
        (issue_token(SECRET, "agent-8"), "agent-7", "does not match agent_id 'agent-7'"),
        (jwt.encode({"sub": "agent-7"}, SECRET, algorithm="HS256"), "agent-7", "'exp' claim"),
    ],
)
def test_refusals_say_why(token: str | None, expected: str, message: str) -> None:
    with pytest.raises(Unauthorized) as info:
        verify_token(SECRET, token, expected)
    assert message in info.value.message
    assert info.value.code == -32004


def test_none_algorithm_is_refused() -> None:
    unsigned = jwt.encode({"sub": "agent-7", "iat": 1, "exp": 2**31}, None, algorithm="none")
    with pytest.raises(Unauthorized):
        verify_token(SECRET, unsigned, "agent-7")


def test_issue_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="TMWS_AUTH_SECRET"):
        issue_token("", "agent-7")


def test_bearer_header_parsing() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer ") is None
    assert bearer_token(None) is None


def test_admin_claim_and_policy() -> None:
    from dataclasses import replace

    from service.auth import admin_policy, is_admin, verify_claims
    from service.config import SecuritySettings, Settings

    assert verify_claims(SECRET, issue_token(SECRET, "boss", admin=True), "boss").admin is True
    assert verify_claims(SECRET, issue_token(SECRET, "minion"), "minion").admin is False
    odd = jwt.encode(
        {"sub": "x", "iat": 1, "exp": 2**40, "admin": "yes"}, SECRET, algorithm="HS256"
    )
    with pytest.raises(Unauthorized, match="'admin'"):
        verify_claims(SECRET, odd, "x")

    open_server = Settings()
    assert is_admin(open_server, "anyone")  # open, no list: everyone, and /health says so
    assert "everyone" in admin_policy(open_server)
    listed = replace(open_server, security=SecuritySettings(admin_agents=("ops",)))
    assert is_admin(listed, "ops") and not is_admin(listed, "anyone")
    assert not is_admin(listed, "anyone", claimed=True)  # no verified claims on an open server
    authed = replace(open_server, auth_secret=SECRET)
    assert not is_admin(authed, "anyone") and is_admin(authed, "anyone", claimed=True)
    both = replace(authed, security=SecuritySettings(admin_agents=("ops",)))
    assert is_admin(both, "ops") and admin_policy(both).startswith("tokens with the admin claim or")
