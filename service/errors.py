"""One error hierarchy for the whole service; each class carries its JSON-RPC code.

    TMWSError (-32603 unless overridden)
    ├── ProtocolError
    │   ├── ParseError            -32700  body is not JSON (RFC 8259: no NaN/Infinity, finite numbers)
    │   │   └── NestingTooDeep    -32700  arrays/objects nested deeper than the limit
    │   ├── InvalidRequest        -32600  JSON but not a JSON-RPC 2.0 request
    │   │   └── BatchTooLong      -32600  more requests in one batch than the limit
    │   ├── MethodNotFound        -32601  unknown method or tool
    │   └── InvalidParams         -32602  params fail validation (names the field)
    │       └── InvalidText       -32602  NUL, lone surrogate or non-finite number (names the field)
    ├── InternalError             -32603  a bug: never leaks a traceback to the wire
    ├── ExecutionTimeout          -32001  work exceeded its time budget and was cancelled
    ├── DependencyUnavailable     -32002  a backing service is down (breaker open or refused)
    │   ├── DatabaseUnavailable   -32002  PostgreSQL
    │   └── CacheUnavailable      -32002  Redis
    ├── LimitExceeded             -32003  a configured bound was hit
    │   ├── RateLimited           -32003  per-connection token bucket empty
    │   ├── PoolExhausted         -32003  no database connection within the wait budget
    │   ├── FrameTooLarge         -32003  frame bigger than the configured limit
    │   ├── ReplyTooLarge         -32003  reply bigger than the configured limit (paging hints)
    │   ├── ConnectionLimit       -32003  too many sockets for one agent, or for the server
    │   └── Busy                  -32003  too many requests in flight (HTTP)
    ├── Unauthorized              -32004  missing or bad token
    ├── NotFound                  -32005  a task, memory or agent that does not exist
    ├── Forbidden                 -32006  a row in another agent's namespace
    │   ├── AdminRequired         -32006  an operation reserved to admin agents
    │   └── OriginRefused         -32006  a foreign Origin or Host header (HTTP 403)
    └── ToolFailed                -32010  a tool ran and failed (workflow step, pattern)

The JSON-RPC dispatcher is the one place these become error objects on the wire.
"""

from __future__ import annotations

from typing import Any, ClassVar


class TMWSError(Exception):
    """Base of every error the service raises on purpose."""

    code: ClassVar[int] = -32603
    reason: ClassVar[str] = "internal_error"

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data or {}

    def to_error_object(self) -> dict[str, Any]:
        """The JSON-RPC 2.0 `error` member for this exception."""
        return {
            "code": self.code,
            "message": self.message,
            "data": {"reason": self.reason, **self.data},
        }


class ProtocolError(TMWSError):
    pass


class ParseError(ProtocolError):
    code = -32700
    reason = "parse_error"


class NestingTooDeep(ParseError):
    reason = "nesting_too_deep"


class InvalidRequest(ProtocolError):
    code = -32600
    reason = "invalid_request"


class BatchTooLong(InvalidRequest):
    reason = "batch_too_long"


class MethodNotFound(ProtocolError):
    code = -32601
    reason = "method_not_found"


class InvalidParams(ProtocolError):
    code = -32602
    reason = "invalid_params"

    def __init__(
        self, message: str, field: str | None = None, data: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message, {**({"field": field} if field else {}), **(data or {})})
        self.field = field


class InvalidText(InvalidParams):
    reason = "invalid_text"


class InternalError(TMWSError):
    code = -32603
    reason = "internal_error"


class ExecutionTimeout(TMWSError):
    code = -32001
    reason = "timeout"


class DependencyUnavailable(TMWSError):
    code = -32002
    reason = "dependency_unavailable"


class DatabaseUnavailable(DependencyUnavailable):
    reason = "database_unavailable"


def lost_dependency(exc: TMWSError) -> bool:
    """The error is a backing service's (unreachable, or past its own deadline: `data.dependency`),
    not the caller's work: it must not count against a pattern."""
    return isinstance(exc, DependencyUnavailable) or bool(exc.data.get("dependency"))


class CacheUnavailable(DependencyUnavailable):
    reason = "cache_unavailable"


class LimitExceeded(TMWSError):
    code = -32003
    reason = "limit_exceeded"


class RateLimited(LimitExceeded):
    reason = "rate_limited"


class PoolExhausted(LimitExceeded):
    reason = "pool_exhausted"


class FrameTooLarge(LimitExceeded):
    reason = "frame_too_large"


class ReplyTooLarge(LimitExceeded):
    reason = "reply_too_large"


class ConnectionLimit(LimitExceeded):
    reason = "connection_limit"


class Busy(LimitExceeded):
    reason = "busy"


class Unauthorized(TMWSError):
    code = -32004
    reason = "unauthorized"


class NotFound(TMWSError):
    code = -32005
    reason = "not_found"


class Forbidden(TMWSError):
    code = -32006
    reason = "forbidden"


class AdminRequired(Forbidden):
    reason = "admin_required"


class OriginRefused(Forbidden):
    reason = "origin_not_allowed"


class ToolFailed(TMWSError):
    code = -32010
    reason = "tool_failed"


#: Documented server error codes (beyond the JSON-RPC standard ones), for README and tests.
SERVER_ERROR_CODES: dict[int, str] = {
    ExecutionTimeout.code: "execution timed out and was cancelled",
    DependencyUnavailable.code: "database or cache unavailable",
    LimitExceeded.code: "rate, pool, frame, batch, reply or connection limit exceeded",
    Unauthorized.code: "missing or invalid agent token",
    NotFound.code: "no such task, memory or agent",
    Forbidden.code: "another agent's namespace, an admin-only operation or a foreign Origin",
    ToolFailed.code: "tool ran and failed",
}
