"""Cursors of the export reads (`ExportOps`): the sort key of the last row a page read, as
compact JSON. They pass only between the export service and the store that issued them, so they
need to round-trip, not to be stable across stores or versions."""

from __future__ import annotations

import base64
import binascii
import json

from persona_server.ports.graph_store import InvalidCursorError

Key = list[int | str | None]


def encode(key: Key) -> str:
    raw = json.dumps(key, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode(cursor: str, start: Key) -> Key:
    """The key in `cursor`, or `start` for "" (the first page)."""
    if not cursor:
        return list(start)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error, UnicodeError) as exc:
        raise InvalidCursorError("invalid export cursor") from exc
    if not isinstance(key, list) or len(key) != len(start):
        raise InvalidCursorError("invalid export cursor")
    return key
