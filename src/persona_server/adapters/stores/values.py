"""How both stores encode values: times as integer microseconds (UTC), metadata as canonical
JSON, type codes, merge keys and entity lookup names, extraction due times, and checked vector
batches. Shared so that the embedded store and Neo4j agree on every rule the conformance suite
pins."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from persona_server.domain.models import (
    Entity,
    EntityKind,
    Episode,
    ExtractionState,
    ExtractionStatus,
    Fact,
    Goal,
    Memory,
    MemoryType,
    Psyche,
)
from persona_server.domain.names import normalise_name
from persona_server.ports.graph_store import Vectors

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)

MEMORY_ADAPTER: TypeAdapter[Memory] = TypeAdapter(Memory)

TYPE_CODES: dict[str, int] = {t.value: i for i, t in enumerate(MemoryType)}


def to_us(value: datetime) -> int:
    # Naive datetimes are read as UTC: the domain promises UTC, and guessing local time would
    # shift events silently.
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // _MICRO


def opt_us(value: datetime | None) -> int | None:
    return None if value is None else to_us(value)


def from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def opt_from_us(value: int | None) -> datetime | None:
    return None if value is None else from_us(value)


def dump_metadata(metadata: Mapping[str, str]) -> str:
    # Sorted keys make equal dicts equal strings, which the vector cache interns by.
    return json.dumps(dict(metadata), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def merge_key(memory: Memory) -> str | None:
    if isinstance(memory, Psyche | Goal):
        return memory.key or None
    if isinstance(memory, Fact):
        return f"{memory.subject_id}|{memory.predicate}"
    if isinstance(memory, Entity):
        return normalise_name(memory.name) or None
    return None


def entity_names(entity: Entity) -> set[str]:
    """Lookup keys of an entity: its names and aliases, and for people also the first and last
    word of a full name, so that "Melanie" finds "Melanie Smith" (resolution then decides
    whether the match is unique enough to merge)."""
    names = {normalise_name(n) for n in [entity.name, *entity.aliases]}
    names.discard("")
    if entity.kind is EntityKind.PERSON:
        for name in list(names):
            words = name.split(" ")
            if len(words) >= 2:
                names.update((words[0], words[-1]))
    return names


def extraction_due(status: ExtractionStatus, recorded_at: datetime) -> int | None:
    """When the episode becomes due for extraction, or None when it never is.

    Pending with no retry time is due at once (ordered by record time, so first in first out);
    failed with no retry time means the extractor gave up, so it is not picked up again.
    """
    if status.state is ExtractionState.DONE:
        return None
    if status.next_attempt_at is not None:
        return to_us(status.next_attempt_at)
    if status.state is ExtractionState.PENDING:
        return to_us(recorded_at)
    return None


def normalise_vectors(vectors: Vectors, count: int, dimension: int) -> Vectors:
    """Validate shape and re-normalise, so a dot product is a cosine whatever the embedder did."""
    arr = np.asarray(vectors, dtype=np.float32)
    if arr.ndim == 1 and count == 1:
        arr = arr.reshape(1, -1)
    if arr.shape != (count, dimension):
        raise ValueError(f"expected vectors of shape ({count}, {dimension}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError("vectors contain NaN or infinity")
    norms = np.linalg.norm(arr, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(arr / norms, dtype=np.float32)


def chain_at(episode: Episode) -> int:
    """An episode's time in the chain order. Episodes without an event time still need a
    chain position; their record time stands in."""
    return to_us(episode.occurred_at or episode.recorded_at)


def memory_fields(memory: Memory, stored_apart: frozenset[str]) -> dict[str, Any]:
    """What both stores keep of a memory, field by field: times as microseconds, metadata as
    JSON, the merge key, a fact's ends, an episode's source, sequence, chain position and
    extraction state, and every model field not in `stored_apart` in the JSON `payload` (so a
    new field needs no migration). Absent values are None, so writing the dict over an earlier
    version also clears what that version had set."""
    payload = memory.model_dump(mode="json", exclude=set(stored_apart))
    fields: dict[str, Any] = {
        "id": memory.id,
        "type": memory.type.value,
        "text": memory.text,
        "occurred_at": opt_us(memory.occurred_at),
        "recorded_at": to_us(memory.recorded_at),
        "valid_from": opt_us(memory.valid_from),
        "invalid_at": opt_us(memory.invalid_at),
        "mention_count": memory.mention_count,
        "cited_count": memory.cited_count,
        "last_reinforced_at": opt_us(memory.last_reinforced_at),
        "metadata": dump_metadata(memory.metadata),
        "payload": json.dumps(payload, sort_keys=True, ensure_ascii=False),
        "merge_key": merge_key(memory),
        "subject_id": None,
        "object_id": None,
        "source_id": None,
        "seq": None,
        "chain_at": None,
        "extraction": None,
        "extraction_due": None,
    }
    if isinstance(memory, Fact):
        fields["subject_id"] = memory.subject_id or None
        fields["object_id"] = memory.object_id or None
    if isinstance(memory, Episode):
        fields["source_id"] = memory.source_id
        fields["seq"] = memory.seq
        fields["chain_at"] = chain_at(memory)
        fields["extraction"] = memory.extraction.model_dump_json()
        fields["extraction_due"] = extraction_due(memory.extraction, memory.recorded_at)
    return fields
