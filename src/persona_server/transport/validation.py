"""Request validation: protos in, validated commands out, or one INVALID_ARGUMENT naming every
bad field. Nothing reaches a service (or the store) unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from google.protobuf import timestamp_pb2

from persona.v1 import memory_pb2 as pb
from persona.v1 import memory_service_pb2 as svc
from persona_server.domain.errors import FieldViolation, InvalidArgumentError
from persona_server.domain.models import ChatRole, MemoryType, SourceType, UserRef
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services import json_schemas, resume_token
from persona_server.services.commands import (
    AskQuery,
    IngestCommand,
    ListQuery,
    NewItem,
    RecallQuery,
    StreamQuery,
)
from persona_server.services.profile import PROFILE_TYPES

MAX_ID_CHARS = 128
MAX_SOURCE_ID_CHARS = 256
MAX_TEXT_BYTES = 32 * 1024
MAX_ITEMS = 500
MAX_QUERY_BYTES = 4096
MAX_RESULTS = 100
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
MAX_METADATA_ENTRIES = 32
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 1024
MAX_SPEAKER_CHARS = 128
MAX_FUTURE = timedelta(days=1)
# Timestamp's own valid range (0001-01-01 .. 9999-12-31), per google/protobuf/timestamp.proto.
_MIN_SECONDS = -62135596800
_MAX_SECONDS = 253402300799

MEMORY_TYPES = {
    pb.MEMORY_TYPE_EPISODE: MemoryType.EPISODE,
    pb.MEMORY_TYPE_PSYCHE: MemoryType.PSYCHE,
    pb.MEMORY_TYPE_GOAL: MemoryType.GOAL,
    pb.MEMORY_TYPE_ENTITY: MemoryType.ENTITY,
    pb.MEMORY_TYPE_FACT: MemoryType.FACT,
}
SOURCE_TYPES = {
    pb.SOURCE_TYPE_UNSPECIFIED: SourceType.TEXT,
    pb.SOURCE_TYPE_TEXT: SourceType.TEXT,
    pb.SOURCE_TYPE_CHAT_MESSAGE: SourceType.CHAT_MESSAGE,
    pb.SOURCE_TYPE_EMAIL: SourceType.EMAIL,
    pb.SOURCE_TYPE_DOCUMENT: SourceType.DOCUMENT,
    pb.SOURCE_TYPE_EVENT: SourceType.EVENT,
}
CHAT_ROLES = {
    pb.CHAT_ROLE_UNSPECIFIED: ChatRole.UNSPECIFIED,
    pb.CHAT_ROLE_USER: ChatRole.USER,
    pb.CHAT_ROLE_ASSISTANT: ChatRole.ASSISTANT,
    pb.CHAT_ROLE_OTHER: ChatRole.OTHER,
}


class Violations:
    """Collects every problem of a request so the caller learns them all at once."""

    def __init__(self) -> None:
        self.items: list[FieldViolation] = []

    def add(self, field: str, description: str) -> None:
        # Descriptions are written as sentences about the field; the field itself is carried
        # separately in the violation, so it is not repeated there.
        description = description.removeprefix(f"{field} ")
        self.items.append(FieldViolation(field, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgumentError(self.items)


def _has_control_chars(value: str) -> bool:
    return any(ord(ch) < 32 or ord(ch) == 127 for ch in value)


def check_id(v: Violations, field: str, value: str, max_chars: int = MAX_ID_CHARS) -> None:
    if not value:
        v.add(field, f"{field} is required")
    elif len(value) > max_chars:
        v.add(field, f"{field} must be at most {max_chars} characters, got {len(value)}")
    elif _has_control_chars(value) or value != value.strip():
        v.add(field, f"{field} must not contain control characters or surrounding whitespace")


def check_text(v: Violations, field: str, value: str, max_bytes: int) -> None:
    size = len(value.encode("utf-8"))
    if not value.strip():
        v.add(field, f"{field} must not be empty")
    elif size > max_bytes:
        v.add(field, f"{field} must be at most {max_bytes} bytes, got {size}")


def check_range(v: Violations, field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        v.add(field, f"{field} must be between {low} and {high}, got {value}")


def to_datetime(v: Violations, field: str, ts: timestamp_pb2.Timestamp) -> datetime | None:
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos <= 999_999_999:
        v.add(field, f"{field} is not a valid timestamp")
        return None
    return datetime.fromtimestamp(ts.seconds, UTC) + timedelta(microseconds=ts.nanos // 1000)


def check_metadata(v: Violations, field: str, metadata: Mapping[str, str]) -> None:
    if len(metadata) > MAX_METADATA_ENTRIES:
        v.add(field, f"{field} may have at most {MAX_METADATA_ENTRIES} entries")
    for key, value in metadata.items():
        if not key or len(key) > MAX_METADATA_KEY_CHARS or _has_control_chars(key):
            v.add(
                f"{field}[{key!r}]",
                f"{field} keys must be 1 to {MAX_METADATA_KEY_CHARS} printable characters",
            )
        if len(value) > MAX_METADATA_VALUE_CHARS:
            v.add(
                f"{field}[{key!r}]",
                f"{field} values must be at most {MAX_METADATA_VALUE_CHARS} characters",
            )


def memory_types(v: Violations, field: str, values: Iterable[Any]) -> frozenset[MemoryType]:
    out: set[MemoryType] = set()
    for i, value in enumerate(values):
        # Unknown enum numbers survive proto3 parsing as plain ints: reject them here.
        if value not in MEMORY_TYPES:
            v.add(f"{field}[{i}]", f"{field}[{i}] is not a known memory type: {value}")
        else:
            out.add(MEMORY_TYPES[value])
    return frozenset(out)


def user_ref(tenant: str, v: Violations, user_id: str) -> UserRef:
    check_id(v, "user_id", user_id)
    return UserRef(tenant=tenant, user_id=user_id)


def ingest(tenant: str, req: svc.IngestRequest, now: datetime) -> IngestCommand:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    if not req.items:
        v.add("items", "items must hold at least one item")
    elif len(req.items) > MAX_ITEMS:
        v.add("items", f"items may hold at most {MAX_ITEMS} per request, got {len(req.items)}")
    items: list[NewItem] = []
    seen: dict[str, int] = {}
    for i, item in enumerate(req.items[:MAX_ITEMS]):
        f = f"items[{i}]"
        check_text(v, f"{f}.text", item.text, MAX_TEXT_BYTES)
        if item.source_id:
            check_id(v, f"{f}.source_id", item.source_id, MAX_SOURCE_ID_CHARS)
            if item.source_id in seen:
                v.add(f"{f}.source_id", f"{f}.source_id repeats items[{seen[item.source_id]}]")
            seen.setdefault(item.source_id, i)
        occurred_at = None
        if item.HasField("occurred_at"):
            occurred_at = to_datetime(v, f"{f}.occurred_at", item.occurred_at)
            if occurred_at is not None and occurred_at > now + MAX_FUTURE:
                v.add(f"{f}.occurred_at", f"{f}.occurred_at is more than one day in the future")
        if item.source_type not in SOURCE_TYPES:
            v.add(f"{f}.source_type", f"{f}.source_type is not a known value: {item.source_type}")
        if item.role not in CHAT_ROLES:
            v.add(f"{f}.role", f"{f}.role is not a known value: {item.role}")
        if len(item.speaker) > MAX_SPEAKER_CHARS or _has_control_chars(item.speaker):
            v.add(
                f"{f}.speaker",
                f"{f}.speaker must be at most {MAX_SPEAKER_CHARS} printable characters",
            )
        check_metadata(v, f"{f}.metadata", item.metadata)
        items.append(
            NewItem(
                text=item.text,
                source_id=item.source_id,
                occurred_at=occurred_at,
                source_type=SOURCE_TYPES.get(item.source_type, SourceType.TEXT),
                speaker=item.speaker,
                role=CHAT_ROLES.get(item.role, ChatRole.UNSPECIFIED),
                metadata=dict(item.metadata),
            )
        )
    v.raise_if_any()
    return IngestCommand(
        user=user, items=items, replace=req.replace, wait_for_extraction=req.wait_for_extraction
    )


def _filter(v: Violations, req_filter: svc.RecallFilter, field: str) -> MemoryFilter:
    types = memory_types(v, f"{field}.types", req_filter.types)
    start = end = None
    if req_filter.time_range.HasField("start"):
        start = to_datetime(v, f"{field}.time_range.start", req_filter.time_range.start)
    if req_filter.time_range.HasField("end"):
        end = to_datetime(v, f"{field}.time_range.end", req_filter.time_range.end)
    if start and end and start >= end:
        v.add(f"{field}.time_range", f"{field}.time_range.start must be before its end")
    check_metadata(v, f"{field}.metadata", req_filter.metadata)
    return MemoryFilter(
        types=types, occurred_from=start, occurred_to=end, metadata=dict(req_filter.metadata)
    )


def recall(tenant: str, req: svc.RecallRequest) -> RecallQuery:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    check_text(v, "query", req.query, MAX_QUERY_BYTES)
    check_range(v, "max_results", req.max_results, 1, MAX_RESULTS)
    flt = _filter(v, req.filter, "filter")
    as_of = to_datetime(v, "as_of", req.as_of) if req.HasField("as_of") else None
    v.raise_if_any()
    flt = MemoryFilter(
        types=flt.types,
        occurred_from=flt.occurred_from,
        occurred_to=flt.occurred_to,
        metadata=flt.metadata,
        include_invalidated=req.include_history or as_of is not None,
        as_of=as_of,
    )
    return RecallQuery(
        user=user,
        query=req.query,
        max_results=req.max_results,
        filter=flt,
        explain=req.explain,
        include_dormant=req.include_dormant,
    )


def ask(tenant: str, req: svc.AskStructuredRequest) -> AskQuery:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    check_text(v, "question", req.question, MAX_QUERY_BYTES)
    check_range(v, "max_memories", req.max_memories, 0, MAX_RESULTS)
    schema = parse_schema(v, req.json_schema)
    v.raise_if_any()
    return AskQuery(
        user=user,
        question=req.question,
        schema=schema or {},
        max_memories=req.max_memories or 20,
    )


def parse_schema(v: Violations, text: str) -> dict[str, Any] | None:
    try:
        return json_schemas.parse(text)
    except json_schemas.SchemaProblem as problem:
        v.add("json_schema", f"json_schema {problem}")
        return None


def stream(tenant: str, req: svc.StreamContextRequest) -> StreamQuery:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    if len(req.query.encode("utf-8")) > MAX_QUERY_BYTES:
        v.add("query", f"query must be at most {MAX_QUERY_BYTES} bytes")
    check_range(v, "max_results", req.max_results, 0, MAX_RESULTS)
    check_range(v, "heartbeat_seconds", req.heartbeat_seconds, 0, 300)
    types = memory_types(v, "types", req.types)
    if not req.query and types and not types & PROFILE_TYPES:
        v.add(
            "types",
            "without a query the context is the profile (goal, psyche, entity and episode "
            "groups); facts belong to no group: set a query to follow them",
        )
    resume_after = None
    if req.resume_token:
        try:
            resume_after = resume_token.decode(user, req.resume_token)
        except resume_token.InvalidResumeTokenError as exc:
            v.add("resume_token", str(exc))
    v.raise_if_any()
    return StreamQuery(
        user=user,
        query=req.query,
        max_results=req.max_results or 10,
        types=types,
        resume_after=resume_after,
        heartbeat_s=float(req.heartbeat_seconds or 15),
        include_dormant=req.include_dormant,
    )


def memory_ref(tenant: str, user_id: str, memory_id: str) -> tuple[UserRef, str]:
    v = Violations()
    user = user_ref(tenant, v, user_id)
    check_id(v, "memory_id", memory_id)
    v.raise_if_any()
    return user, memory_id


def list_memories(tenant: str, req: svc.ListMemoriesRequest) -> ListQuery:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    check_range(v, "page_size", req.page_size, 0, MAX_PAGE_SIZE)
    types = memory_types(v, "types", req.types)
    if len(req.page_token) > 1024:
        v.add("page_token", "page_token is not a token this server issued")
    v.raise_if_any()
    return ListQuery(
        user=user,
        page_size=req.page_size or DEFAULT_PAGE_SIZE,
        cursor=req.page_token,
        filter=MemoryFilter(types=types, include_invalidated=req.include_invalidated),
    )


def delete_user(tenant: str, req: svc.DeleteUserRequest) -> UserRef:
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    v.raise_if_any()
    return user
