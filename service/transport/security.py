"""What both endpoints check before anything else: Origin and Host (DNS rebinding), and the
log filter that keeps bearer tokens out of every uvicorn line.

MCP 2025-11-25 (transports, security warning): servers MUST validate `Origin` and answer a
foreign one with 403, or any web page the user opens can drive a local server. A page on
`evil.example` whose DNS is rebound to 127.0.0.1 sends `Origin: http://evil.example:8000` and
`Host: evil.example:8000`; both are refused here. Clients that are not browsers send no Origin
and are let through.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping
from urllib.parse import urlsplit

from service.auth import redact
from service.config import Settings
from service.errors import OriginRefused

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})


def _is_loopback(hostname: str) -> bool:
    name = hostname.strip("[]").lower().rstrip(".")
    if name in LOOPBACK_NAMES or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _split_host(value: str) -> tuple[str, str | None]:
    """(hostname, port) of a Host header value such as `[::1]:8000` or `example.com`."""
    parts = urlsplit(f"//{value}")
    try:
        port = str(parts.port) if parts.port is not None else None
    except ValueError:
        port = None
    return (parts.hostname or "").lower(), port


def origin_allowed(origin: str | None, settings: Settings) -> bool:
    """True for no Origin (not a browser), a loopback origin by default, or an allowed one."""
    if origin is None:
        return True
    origin = origin.strip().rstrip("/").lower()
    allowed = settings.security.allowed_origins
    if not allowed:
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and _is_loopback(parts.hostname or "")
    for entry in allowed:
        entry = entry.strip().rstrip("/").lower()
        if entry == "*" or entry == origin:
            return True
        if entry.endswith(":*") and origin.startswith(entry[:-1]):
            port = origin[len(entry) - 1 :]
            if port.isdigit():
                return True
    return False


def host_allowed(host: str | None, settings: Settings) -> bool:
    """True for loopback names, the bound address (any when bound to a wildcard), or listed hosts."""
    if not host:
        return True  # HTTP/1.0 without Host: not something a browser sends
    hostname, port = _split_host(host)
    allowed = settings.security.allowed_hosts
    if allowed:
        for entry in allowed:
            entry = entry.strip().lower()
            if entry == "*" or entry == hostname or (port and entry == f"{hostname}:{port}"):
                return True
        return False
    bound = settings.host.strip().lower()
    if bound in WILDCARD_HOSTS:
        return True
    return _is_loopback(hostname) or hostname == bound.strip("[]")


def check_request(headers: Mapping[str, str], settings: Settings) -> OriginRefused | None:
    """The refusal for a request with a foreign Origin or Host (lower-case header names)."""
    origin = headers.get("origin")
    if not origin_allowed(origin, settings):
        return OriginRefused(
            f"origin {origin[:100]!r} is not allowed (TMWS_ALLOWED_ORIGINS)",
            {"origin": origin[:100]},
        )
    host = headers.get("host")
    if not host_allowed(host, settings):
        assert host is not None
        return OriginRefused(
            f"host {host[:100]!r} is not allowed (TMWS_ALLOWED_HOSTS)", {"host": host[:100]}
        )
    return None


class RedactTokens(logging.Filter):
    """Rewrites bearer tokens to REDACTED in a record's message and arguments.

    uvicorn's access formatter unpacks `record.args` itself, so the arguments are rewritten one
    by one instead of flattening the record. It also drops uvicorn's WebSocket "[accepted]" line:
    the transport logs its own line once it has admitted or refused the agent, since a socket
    that is accepted only to be closed with a reason would otherwise be logged as accepted.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.endswith('"WebSocket %s" [accepted]'):
            return False
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {
                k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()
            }
        return True


_FILTER = RedactTokens()
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def install_log_redaction() -> None:
    """Put the filter on uvicorn's loggers and their handlers (idempotent).

    Call after uvicorn configured logging (it replaces handlers then): logger filters only see
    records created on that very logger, handler filters see the propagated ones too.
    """
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)
