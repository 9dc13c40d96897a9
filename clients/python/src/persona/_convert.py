"""Friendly Python values -> proto fields.

Conversion only: a value the SDK cannot turn into the proto field (an unknown enum name, a
string that is no date) fails here with INVALID_ARGUMENT naming the field; everything the
server checks (lengths, ranges, future dates) is left to the server, the one authority on
validity, so the SDK never rejects what a newer server accepts.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time
from typing import Any, Protocol

from google.protobuf.timestamp_pb2 import Timestamp

from persona._errors import invalid_argument
from persona._types import (
    ChatRoleLike,
    IngestItemLike,
    Item,
    MemoryTypeLike,
    SourceTypeLike,
    TimeRangeLike,
    TimestampLike,
)
from persona.v1 import memory_pb2, memory_service_pb2

_ITEM_FIELDS = frozenset(Item.__dataclass_fields__)


class _EnumType(Protocol):
    # What the generated enum classes offer (through their EnumTypeWrapper metaclass).
    def Value(self, name: str) -> int: ...
    def items(self) -> Iterable[tuple[str, int]]: ...


def to_datetime(value: datetime | date | str, field: str) -> datetime:
    """An aware UTC datetime; naive values (and zone-less strings) are read as UTC."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            raise invalid_argument(field, f"not an ISO 8601 date or date-time: {value!r}") from None
    if not isinstance(value, datetime):  # a plain date: its midnight, UTC
        value = datetime.combine(value, time(), UTC)
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def to_timestamp(value: TimestampLike, field: str) -> Timestamp:
    if isinstance(value, Timestamp):
        copy = Timestamp()
        copy.CopyFrom(value)
        return copy
    if not isinstance(value, datetime | date | str):
        raise TypeError(
            f"{field}: expected datetime, date, ISO 8601 str or Timestamp, got {value!r}"
        )
    ts = Timestamp()
    ts.FromDatetime(to_datetime(value, field))
    return ts


def _enum_value(wrapper: _EnumType, prefix: str, value: object, field: str) -> int:
    # bool is an int subclass; True as a memory type is a bug, not MEMORY_TYPE_EPISODE.
    if isinstance(value, int) and not isinstance(value, bool):
        return value  # unknown numbers pass: a newer server may know them
    if isinstance(value, str):
        name = value.strip().upper().replace("-", "_")
        if not name.startswith(prefix):
            name = prefix + name
        try:
            return wrapper.Value(name)
        except ValueError:
            known = ", ".join(
                n.removeprefix(prefix).lower()
                for n, _ in wrapper.items()
                if not n.endswith("UNSPECIFIED")
            )
            raise invalid_argument(
                field, f"unknown value {value!r}; expected one of {known}"
            ) from None
    raise TypeError(f"{field}: expected an enum name or value, got {value!r}")


def memory_type(value: MemoryTypeLike, field: str) -> memory_pb2.MemoryType.ValueType:
    return memory_pb2.MemoryType.ValueType(
        _enum_value(memory_pb2.MemoryType, "MEMORY_TYPE_", value, field)
    )


def memory_types(
    values: Iterable[MemoryTypeLike] | MemoryTypeLike, field: str
) -> list[memory_pb2.MemoryType.ValueType]:
    if isinstance(values, str | int):  # one type given bare: types="episode"
        values = [values]
    return [memory_type(v, f"{field}[{i}]") for i, v in enumerate(values)]


def source_type(value: SourceTypeLike, field: str) -> memory_pb2.SourceType.ValueType:
    return memory_pb2.SourceType.ValueType(
        _enum_value(memory_pb2.SourceType, "SOURCE_TYPE_", value, field)
    )


def chat_role(value: ChatRoleLike, field: str) -> memory_pb2.ChatRole.ValueType:
    return memory_pb2.ChatRole.ValueType(
        _enum_value(memory_pb2.ChatRole, "CHAT_ROLE_", value, field)
    )


def string_map(value: Mapping[str, str] | None, field: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{field}: expected a mapping of str to str, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise TypeError(f"{field}: keys and values must be str, got {key!r}: {item!r}")
    return dict(value)


def ingest_item(value: IngestItemLike, field: str) -> memory_service_pb2.IngestItem:
    if isinstance(value, memory_service_pb2.IngestItem):
        return value
    if isinstance(value, str):
        return memory_service_pb2.IngestItem(text=value)
    if isinstance(value, Mapping):
        unknown = set(value) - _ITEM_FIELDS
        if unknown:
            raise TypeError(f"{field}: unknown item field(s) {sorted(unknown)}")
        value = Item(**value)
    if not isinstance(value, Item):
        raise TypeError(f"{field}: expected Item, IngestItem, str or mapping, got {value!r}")
    item = memory_service_pb2.IngestItem(
        text=value.text,
        source_id=value.source_id,
        source_type=source_type(value.source_type, f"{field}.source_type"),
        speaker=value.speaker,
        role=chat_role(value.role, f"{field}.role"),
        metadata=string_map(value.metadata, f"{field}.metadata"),
    )
    if value.occurred_at is not None:
        item.occurred_at.CopyFrom(to_timestamp(value.occurred_at, f"{field}.occurred_at"))
    return item


def time_range(value: TimeRangeLike, field: str) -> memory_service_pb2.TimeRange:
    if isinstance(value, memory_service_pb2.TimeRange):
        return value
    start, end = value
    result = memory_service_pb2.TimeRange()
    if start is not None:
        result.start.CopyFrom(to_timestamp(start, f"{field}.start"))
    if end is not None:
        result.end.CopyFrom(to_timestamp(end, f"{field}.end"))
    return result


def json_schema(value: Mapping[str, Any] | str | bytes) -> str:
    """A schema given as a dict is serialised; text is sent as given for the server to judge."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
