"""Just enough RESP (Redis serialization protocol, 2 and 3) to cut a byte stream into frames and
tell a pub/sub message from any other reply — what the fault proxy needs to drop or delay one
invalidation without corrupting the rest of the connection.

`FrameCutter.feed(data)` returns the complete frames in `data` (plus whatever was left over from
before); a frame split across reads waits for the rest. Bulk strings are skipped by their length
prefix, so a large cached value costs one slice, not a scan.
"""

from __future__ import annotations

#: Types whose payload is one line.
_LINE_TYPES = frozenset(b"+-:_,#(")
#: Types whose payload is a length-prefixed blob.
_BLOB_TYPES = frozenset(b"$!=")
#: Aggregate types: count of elements (maps and attributes count pairs).
_AGGREGATES = {ord("*"): 1, ord(">"): 1, ord("~"): 1, ord("%"): 2, ord("|"): 2}
PUBSUB_KINDS = (b"message", b"pmessage", b"smessage")


class RespError(ValueError):
    """The stream is not RESP (the proxy then stops parsing and passes bytes through)."""


def _frame_end(buf: bytes | bytearray, pos: int) -> int | None:
    """Offset just past the frame starting at `pos`, or None if the frame is incomplete."""
    if pos >= len(buf):
        return None
    kind = buf[pos]
    line_end = buf.find(b"\r\n", pos)
    if line_end < 0:
        return None
    if kind in _LINE_TYPES:
        return line_end + 2
    try:
        count = int(buf[pos + 1 : line_end])
    except ValueError:
        raise RespError(f"bad length line {bytes(buf[pos:line_end])[:40]!r}") from None
    if kind in _BLOB_TYPES:
        if count < 0:
            return line_end + 2
        end = line_end + 2 + count + 2
        return end if end <= len(buf) else None
    if kind in _AGGREGATES:
        end = line_end + 2
        if count < 0:
            return end
        for _ in range(count * _AGGREGATES[kind]):
            nxt = _frame_end(buf, end)
            if nxt is None:
                return None
            end = nxt
        return end
    raise RespError(f"unknown RESP type byte {bytes([kind])!r}")


def pubsub_kind(frame: bytes) -> bytes | None:
    """`b"message"`/`b"pmessage"`/`b"smessage"` if `frame` is a pub/sub delivery, else None."""
    if not frame or frame[0] not in (ord("*"), ord(">")):
        return None
    head_end = frame.find(b"\r\n")
    first = head_end + 2
    if first >= len(frame) or frame[first] != ord("$"):
        return None
    line_end = frame.find(b"\r\n", first)
    try:
        size = int(frame[first + 1 : line_end])
    except ValueError:
        return None
    word = frame[line_end + 2 : line_end + 2 + size].lower()
    return word if word in PUBSUB_KINDS else None


def is_subscribe_command(data: bytes) -> bool:
    """Whether a client's bytes carry a SUBSCRIBE-family command (the connection then receives
    pub/sub deliveries)."""
    upper = data.upper()
    return b"SUBSCRIBE\r\n" in upper


class FrameCutter:
    """Incremental: feed bytes, get complete frames back in order."""

    def __init__(self) -> None:
        self._buf = bytearray()
        #: Leading bytes of the buffer already passed on unparsed (not to be sent twice).
        self._sent = 0

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        frames: list[bytes] = []
        pos = 0
        while True:
            end = _frame_end(self._buf, pos)
            if end is None:
                break
            frames.append(bytes(self._buf[pos:end]))
            pos = end
        del self._buf[:pos]
        if frames and self._sent:
            frames[0] = frames[0][self._sent :]
        self._sent = 0 if frames else self._sent
        return frames

    def passed_through(self) -> None:
        """The caller sent the fed bytes on as they were: only keep track of the boundaries."""
        self._sent = len(self._buf)

    def take_rest(self) -> bytes:
        """Whatever is buffered (when giving up on parsing)."""
        rest, self._buf = bytes(self._buf[self._sent :]), bytearray()
        self._sent = 0
        return rest
