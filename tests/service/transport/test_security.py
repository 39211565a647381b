"""Origin and Host rules (DNS rebinding), without sockets."""

from __future__ import annotations

from dataclasses import replace

import pytest

from service.config import SecuritySettings, Settings
from service.transport.security import check_request, host_allowed, origin_allowed

LOCAL = Settings()


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),
        ("http://localhost:5173", True),
        ("https://127.0.0.1", True),
        ("http://127.8.9.10:80", True),
        ("http://[::1]:8000", True),
        ("http://app.localhost:3000", True),
        ("http://evil.example.com", False),
        ("http://localhost.evil.com", False),
        ("null", False),
        ("file://", False),
        ("ws://localhost", False),
    ],
)
def test_default_origins_are_loopback_only(origin: str | None, allowed: bool) -> None:
    assert origin_allowed(origin, LOCAL) is allowed


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (None, True),
        ("127.0.0.1:8000", True),
        ("localhost", True),
        ("[::1]:9", True),
        ("evil.example.com", False),
        ("evil.example.com:8000", False),
        ("10.0.0.5:8000", False),
    ],
)
def test_default_hosts_are_loopback_and_the_bound_address(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, LOCAL) is allowed


def test_bound_address_and_wildcards() -> None:
    on_node = replace(LOCAL, host="10.0.0.5")
    assert host_allowed("10.0.0.5:8000", on_node) and not host_allowed("10.0.0.6", on_node)
    everywhere = replace(LOCAL, host="0.0.0.0")
    assert host_allowed("tmws:8000", everywhere)  # e.g. a compose service name
    listed = replace(everywhere, security=SecuritySettings(allowed_hosts=("tmws", "api:443")))
    assert host_allowed("tmws:8000", listed) and host_allowed("api:443", listed)
    assert not host_allowed("api:80", listed) and not host_allowed("localhost", listed)


def test_refusal_names_what_was_refused() -> None:
    refused = check_request({"origin": "http://evil.example.com"}, LOCAL)
    assert refused is not None and refused.code == -32006
    assert refused.data == {"origin": "http://evil.example.com"}
    refused = check_request({"host": "evil.example.com"}, LOCAL)
    assert refused is not None and refused.data == {"host": "evil.example.com"}
    assert check_request({"host": "127.0.0.1:1", "origin": "http://localhost:1"}, LOCAL) is None
