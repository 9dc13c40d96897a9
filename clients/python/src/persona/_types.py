"""The friendly Python values the clients accept in place of protos."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TypeAlias

from google.protobuf.timestamp_pb2 import Timestamp

from persona.v1 import memory_pb2, memory_service_pb2

__all__ = [
    "ChatRoleLike",
    "IngestItemLike",
    "Item",
    "MemoryTypeLike",
    "SourceTypeLike",
    "TimeRangeLike",
    "TimestampLike",
]

# A datetime without tzinfo is read as UTC; a date is its midnight UTC; a str is ISO 8601.
TimestampLike: TypeAlias = datetime | date | str | Timestamp
# An enum accepts the proto value or a name, in any case, with or without the prefix:
# "episode", "EPISODE" and "MEMORY_TYPE_EPISODE" are the same.
MemoryTypeLike: TypeAlias = memory_pb2.MemoryType.ValueType | int | str
SourceTypeLike: TypeAlias = memory_pb2.SourceType.ValueType | int | str
ChatRoleLike: TypeAlias = memory_pb2.ChatRole.ValueType | int | str
# (start, end): inclusive start, exclusive end; None leaves that side open.
TimeRangeLike: TypeAlias = (
    memory_service_pb2.TimeRange | tuple[TimestampLike | None, TimestampLike | None]
)


@dataclass(frozen=True, slots=True)
class Item:
    """One text or chat message to ingest (builds `persona.v1.IngestItem`).

    Give every item a `source_id` (your own stable id for it): re-ingesting it is then a no-op,
    and the client may safely retry the whole batch when the server is briefly unavailable.
    """

    text: str
    source_id: str = ""
    occurred_at: TimestampLike | None = None
    source_type: SourceTypeLike = 0
    speaker: str = ""
    role: ChatRoleLike = 0
    metadata: Mapping[str, str] = field(default_factory=dict)


# What `ingest(items=...)` takes: an Item, a proto IngestItem, a bare text, or a mapping with
# Item's field names (e.g. one line of a JSONL file).
IngestItemLike: TypeAlias = Item | memory_service_pb2.IngestItem | str | Mapping[str, Any]
