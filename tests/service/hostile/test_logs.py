"""No bearer token in any log line, and connection lines that say what really happened.

Before: with `?token=` the access log wrote full tokens, and sockets accepted only to be closed
(a bad token, a full agent) were logged as "[accepted]".
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from service.auth import issue_token
from service.client import WsClient
from tests.service.hostile.conftest import MCP_HEADERS, StartLight

SECRET = "hostile-log-test-secret-of-more-than-32-bytes"
LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "tmws.access")


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def capture() -> Iterator[Callable[[], list[str]]]:
    """Call after the server started (uvicorn's logging set-up replaces handlers)."""
    handler = Lines()
    access = logging.getLogger("tmws.access")
    level = access.level

    def attach() -> list[str]:
        access.setLevel(logging.INFO)
        for name in LOGGERS:
            logging.getLogger(name).addHandler(handler)
        return handler.lines

    try:
        yield attach
    finally:
        for name in LOGGERS:
            logging.getLogger(name).removeHandler(handler)
        access.setLevel(level)


async def test_tokens_never_reach_the_log_and_refusals_say_refused(
    start_light: StartLight, capture: Callable[[], list[str]]
) -> None:
    server = await start_light(auth_secret=SECRET, log_level="info", max_connections_per_agent=1)
    log_lines = capture()
    good = issue_token(SECRET, "logged-agent")
    wrong = issue_token(SECRET, "someone-else")
    async with await WsClient.connect(server.ws, "logged-agent", good) as client:
        assert await client.call("ping") == {}
        # The same agent again: over its limit, accepted only to be closed with the reason.
        with pytest.raises(ConnectionClosed):
            await WsClient.connect(server.ws, "logged-agent", good)
    with pytest.raises(ConnectionClosed):
        await WsClient.connect(server.ws, "logged-agent", wrong)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{server.mcp}?token={good}",
            content=json.dumps({"jsonrpc": "2.0", "id": 1, "method": "ping"}),
            headers={**MCP_HEADERS, "Authorization": f"Bearer {good}"},
        )
        assert response.status_code == 200

    text = "\n".join(log_lines)
    assert log_lines, "the server logged nothing: the check would pass vacuously"
    for token in (good, wrong):
        assert token not in text
        assert token.split(".")[2] not in text  # not even the signature
    assert "token=REDACTED" in text
    # uvicorn's own lines are captured (so the next check can fail), minus its "[accepted]" one,
    # which cannot tell an admitted socket from one accepted only to be refused.
    assert any("connection open" in line for line in log_lines), log_lines
    assert "[accepted]" not in text
    ws_lines = [line for line in log_lines if '"WebSocket /ws/mcp' in line]
    assert sum(" accepted agent=logged-agent " in line for line in ws_lines) == 1
    refused = [line for line in ws_lines if " refused (close " in line]
    assert len(refused) == 2, ws_lines
    assert any("1013" in line and "open connections" in line for line in refused)
    assert any("1008" in line and "does not match" in line for line in refused)
    assert any('"POST /mcp?token=REDACTED' in line for line in log_lines), log_lines


def test_the_filter_rewrites_arguments_and_drops_the_handshake_line() -> None:
    from service.transport.security import RedactTokens

    access = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("1.2.3.4:5", "GET", "/mcp?agent_id=a&token=abc.def.ghi", "1.1", 200), None,
    )  # fmt: skip
    assert RedactTokens().filter(access)
    assert access.args == ("1.2.3.4:5", "GET", "/mcp?agent_id=a&token=REDACTED", "1.1", 200)
    handshake = logging.LogRecord(
        "uvicorn.error", logging.INFO, __file__, 1, '%s - "WebSocket %s" [accepted]',
        ("1.2.3.4:5", "/ws/mcp?token=x"), None,
    )  # fmt: skip
    assert not RedactTokens().filter(handshake)
    header = logging.LogRecord(
        "x", logging.INFO, __file__, 1, "Authorization: Bearer eyJ.abc.def", None, None
    )
    assert RedactTokens().filter(header)
    assert header.getMessage() == "Authorization: Bearer REDACTED"
