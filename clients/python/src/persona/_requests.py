"""Request building and retry safety for every RPC, shared by the async and sync clients."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from persona import _convert
from persona._types import IngestItemLike, MemoryTypeLike, TimeRangeLike, TimestampLike
from persona.v1 import memory_service_pb2 as pb
from persona.v1 import profile_pb2


def ingest(
    user_id: str,
    items: Iterable[IngestItemLike] | None,
    text: str | None,
    *,
    replace: bool,
    wait_for_extraction: bool,
) -> pb.IngestRequest:
    if (items is None) == (text is None):
        raise TypeError("ingest() takes either items or text=, not both or neither")
    if text is not None:
        items = [text]
    assert items is not None
    if isinstance(items, str | Mapping) or not isinstance(items, Iterable):
        # ingest("u1", "hello") would otherwise ingest one item per character
        raise TypeError("items must be a list of items; pass a single text as text=")
    return pb.IngestRequest(
        user_id=user_id,
        items=[_convert.ingest_item(item, f"items[{i}]") for i, item in enumerate(items)],
        replace=replace,
        wait_for_extraction=wait_for_extraction,
    )


def ingest_is_idempotent(request: pb.IngestRequest) -> bool:
    """Ingest may be retried only when every item names its source: the server then dedupes a
    replay (UNCHANGED) instead of storing a second episode with a server-assigned id."""
    return bool(request.items) and all(item.source_id for item in request.items)


def recall(
    user_id: str,
    query: str,
    *,
    max_results: int,
    types: Iterable[MemoryTypeLike] | MemoryTypeLike,
    time_range: TimeRangeLike | None,
    metadata: Mapping[str, str] | None,
    explain: bool,
    include_history: bool,
    as_of: TimestampLike | None,
    include_dormant: bool = False,
) -> pb.RecallRequest:
    request = pb.RecallRequest(
        user_id=user_id,
        query=query,
        max_results=max_results,
        explain=explain,
        include_history=include_history,
        include_dormant=include_dormant,
    )
    request.filter.types.extend(_convert.memory_types(types, "filter.types"))
    request.filter.metadata.update(_convert.string_map(metadata, "filter.metadata"))
    if time_range is not None:
        request.filter.time_range.CopyFrom(_convert.time_range(time_range, "filter.time_range"))
    if as_of is not None:
        request.as_of.CopyFrom(_convert.to_timestamp(as_of, "as_of"))
    if request.filter.ByteSize() == 0:
        request.ClearField("filter")
    return request


def ask_structured(
    user_id: str, question: str, schema: Mapping[str, Any] | str | bytes, *, max_memories: int
) -> pb.AskStructuredRequest:
    return pb.AskStructuredRequest(
        user_id=user_id,
        question=question,
        json_schema=_convert.json_schema(schema),
        max_memories=max_memories,
    )


def stream_context(
    user_id: str,
    *,
    query: str,
    max_results: int,
    types: Iterable[MemoryTypeLike] | MemoryTypeLike,
    resume_token: str,
    heartbeat_seconds: int,
    include_dormant: bool = False,
) -> pb.StreamContextRequest:
    return pb.StreamContextRequest(
        user_id=user_id,
        query=query,
        max_results=max_results,
        types=_convert.memory_types(types, "types"),
        resume_token=resume_token,
        heartbeat_seconds=heartbeat_seconds,
        include_dormant=include_dormant,
    )


def resumed(request: pb.StreamContextRequest, resume_token: str) -> pb.StreamContextRequest:
    """The same subscription, picking up after the last event the consumer received."""
    again = pb.StreamContextRequest()
    again.CopyFrom(request)
    if resume_token:
        again.resume_token = resume_token
    return again


def get_memory(user_id: str, memory_id: str) -> pb.GetMemoryRequest:
    return pb.GetMemoryRequest(user_id=user_id, memory_id=memory_id)


def list_memories(
    user_id: str,
    *,
    page_size: int,
    page_token: str,
    types: Iterable[MemoryTypeLike] | MemoryTypeLike,
    include_invalidated: bool,
) -> pb.ListMemoriesRequest:
    return pb.ListMemoriesRequest(
        user_id=user_id,
        page_size=page_size,
        page_token=page_token,
        types=_convert.memory_types(types, "types"),
        include_invalidated=include_invalidated,
    )


def delete_memory(user_id: str, memory_id: str) -> pb.DeleteMemoryRequest:
    return pb.DeleteMemoryRequest(user_id=user_id, memory_id=memory_id)


def delete_user(user_id: str) -> pb.DeleteUserRequest:
    return pb.DeleteUserRequest(user_id=user_id)


def get_profile(
    user_id: str, *, max_items: int, as_of: TimestampLike | None, include_dormant: bool
) -> profile_pb2.GetProfileRequest:
    request = profile_pb2.GetProfileRequest(
        user_id=user_id, max_items=max_items, include_dormant=include_dormant
    )
    if as_of is not None:
        request.as_of.CopyFrom(_convert.to_timestamp(as_of, "as_of"))
    return request
