"""Page cursors of ListMemories: opaque to clients, the same on every store, so a cursor keeps
working whichever store serves the next page. A cursor is the (record time, id) of the last
memory of a page."""

from __future__ import annotations

import base64
import binascii
import json

from persona_server.ports.graph_store import InvalidCursorError

_CURSOR_VERSION = 1


def encode_cursor(recorded_at_us: int, memory_id: str) -> str:
    raw = json.dumps([_CURSOR_VERSION, recorded_at_us, memory_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursorError("invalid page cursor") from exc
    if (
        not isinstance(data, list)
        or len(data) != 3
        or data[0] != _CURSOR_VERSION
        or type(data[1]) is not int
        or not isinstance(data[2], str)
    ):
        raise InvalidCursorError("invalid page cursor")
    return data[1], data[2]
