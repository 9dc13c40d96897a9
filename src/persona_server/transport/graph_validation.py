"""ImportGraph requests: protos in, checked domain chunks out (the reverse of graph_convert).

Field paths count nodes and edges across the whole stream (`nodes[i]`, `edges[j]`), so a
client that sent records in file order can point at the line. What needs the whole stream
(references, the chain, conflicts with the store) is the import service's to check.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from google.protobuf import timestamp_pb2

from persona.v1 import graph_pb2 as gpb
from persona.v1 import memory_pb2 as pb
from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.ids import type_of
from persona_server.domain.models import (
    Entity,
    EntityKind,
    Episode,
    ExtractionState,
    ExtractionStatus,
    Fact,
    Goal,
    GoalStatus,
    Memory,
    MemoryBase,
    Psyche,
    PsycheKind,
    UserRef,
)
from persona_server.services.graph_import import ImportChunk, invalid
from persona_server.transport.validation import (
    CHAT_ROLES,
    MAX_ID_CHARS,
    MAX_SOURCE_ID_CHARS,
    MAX_SPEAKER_CHARS,
    MAX_TEXT_BYTES,
    MEMORY_TYPES,
    SOURCE_TYPES,
    Violations,
    check_id,
    check_metadata,
    check_range,
    check_text,
    to_datetime,
    user_ref,
)

EDGE_KINDS = {
    gpb.GRAPH_EDGE_TYPE_NEXT: EdgeKind.NEXT,
    gpb.GRAPH_EDGE_TYPE_MENTIONS: EdgeKind.MENTIONS,
    gpb.GRAPH_EDGE_TYPE_DERIVED_FROM: EdgeKind.DERIVED_FROM,
    gpb.GRAPH_EDGE_TYPE_SUBJECT: EdgeKind.SUBJECT,
    gpb.GRAPH_EDGE_TYPE_OBJECT: EdgeKind.OBJECT,
}
EXTRACTION_STATES = {
    pb.EXTRACTION_STATE_PENDING: ExtractionState.PENDING,
    pb.EXTRACTION_STATE_DONE: ExtractionState.DONE,
    pb.EXTRACTION_STATE_FAILED: ExtractionState.FAILED,
}
PSYCHE_KINDS = {
    pb.PSYCHE_KIND_TRAIT: PsycheKind.TRAIT,
    pb.PSYCHE_KIND_VALUE: PsycheKind.VALUE,
    pb.PSYCHE_KIND_PREFERENCE: PsycheKind.PREFERENCE,
}
GOAL_STATUSES = {
    pb.GOAL_STATUS_ACTIVE: GoalStatus.ACTIVE,
    pb.GOAL_STATUS_ACHIEVED: GoalStatus.ACHIEVED,
    pb.GOAL_STATUS_ABANDONED: GoalStatus.ABANDONED,
}
ENTITY_KINDS = {
    pb.ENTITY_KIND_PERSON: EntityKind.PERSON,
    pb.ENTITY_KIND_PLACE: EntityKind.PLACE,
    pb.ENTITY_KIND_ORGANIZATION: EntityKind.ORGANIZATION,
    pb.ENTITY_KIND_THING: EntityKind.THING,
    pb.ENTITY_KIND_EVENT: EntityKind.EVENT,
    pb.ENTITY_KIND_OTHER: EntityKind.OTHER,
}
_DETAIL = {
    pb.MEMORY_TYPE_EPISODE: "episode",
    pb.MEMORY_TYPE_PSYCHE: "psyche",
    pb.MEMORY_TYPE_GOAL: "goal",
    pb.MEMORY_TYPE_ENTITY: "entity",
    pb.MEMORY_TYPE_FACT: "fact",
}
MAX_SHORT_CHARS = 1024  # names, aliases, predicates, keys, extractor names, errors


class ImportStream:
    """The state the transport keeps across the requests of one ImportGraph call."""

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant
        self._user: UserRef | None = None
        self._nodes = 0
        self._edges = 0

    def chunk(self, req: gpb.ImportGraphRequest) -> ImportChunk:
        v = Violations()
        if self._user is None:
            self._user = user_ref(self._tenant, v, req.user_id)
        elif req.user_id and req.user_id != self._user.user_id:
            v.add("user_id", "must be empty or the first message's user_id in later messages")
        nodes: list[Memory] = []
        for i, node in enumerate(req.nodes, start=self._nodes):
            converted = memory(v, f"nodes[{i}]", node)
            if converted is not None:
                nodes.append(converted)
        edges = [edge(v, f"edges[{j}]", e) for j, e in enumerate(req.edges, start=self._edges)]
        self._nodes += len(req.nodes)
        self._edges += len(req.edges)
        if v.items:
            raise invalid(v.items)
        return ImportChunk(self._user, nodes, edges)


def edge(v: Violations, path: str, e: gpb.GraphEdge) -> Edge:
    if e.type not in EDGE_KINDS:
        v.add(f"{path}.type", f"{path}.type is not a known edge type: {e.type}")
    check_id(v, f"{path}.from_id", e.from_id)
    check_id(v, f"{path}.to_id", e.to_id)
    if e.from_id and e.from_id == e.to_id:
        v.add(f"{path}.to_id", f"{path}.to_id must differ from from_id")
    return Edge(EDGE_KINDS.get(e.type, EdgeKind.NEXT), e.from_id, e.to_id)


def _time(v: Violations, path: str, ts: timestamp_pb2.Timestamp) -> datetime | None:
    return to_datetime(v, path, ts)


def _short(v: Violations, path: str, value: str, *, required: bool = False) -> None:
    if required and not value.strip():
        v.add(path, f"{path} is required")
    elif len(value) > MAX_SHORT_CHARS:
        v.add(path, f"{path} must be at most {MAX_SHORT_CHARS} characters")


def _enum(v: Violations, path: str, value: int, known: Mapping[Any, object]) -> None:
    if value not in known:
        v.add(path, f"{path} is not set or not a known value: {value}")


def memory(v: Violations, path: str, node: pb.Memory) -> Memory | None:
    """The domain memory of one node, or None (with violations) when it cannot be built."""
    before = len(v.items)
    check_id(v, f"{path}.id", node.id)
    memory_type = MEMORY_TYPES.get(node.type)
    if memory_type is None:
        v.add(f"{path}.type", f"{path}.type is not a known memory type: {node.type}")
        return None
    if node.id and type_of(node.id) is not memory_type:
        v.add(f"{path}.id", f"{path}.id must start with the prefix of a {memory_type.value}")
    detail = _DETAIL[node.type]
    if node.WhichOneof("detail") != detail:
        v.add(f"{path}.{detail}", f"{path}.{detail} must be set for a {memory_type.value}")
        return None
    check_text(v, f"{path}.text", node.text, MAX_TEXT_BYTES)
    if not node.HasField("recorded_at"):
        v.add(f"{path}.recorded_at", f"{path}.recorded_at is required")
    if node.provenance.episode_ids or node.provenance.source_ids:
        v.add(
            f"{path}.provenance",
            f"{path}.provenance must be empty: DERIVED_FROM edges carry provenance",
        )
    if node.reinforcement.mention_count < 1:
        v.add(
            f"{path}.reinforcement.mention_count",
            f"{path}.reinforcement.mention_count must be at least 1",
        )
    check_metadata(v, f"{path}.metadata", node.metadata)
    base = {
        "id": node.id,
        "text": node.text,
        "recorded_at": _time(v, f"{path}.recorded_at", node.recorded_at),
        "occurred_at": (
            _time(v, f"{path}.occurred_at", node.occurred_at)
            if node.HasField("occurred_at")
            else None
        ),
        "valid_from": (
            _time(v, f"{path}.validity.valid_from", node.validity.valid_from)
            if node.validity.HasField("valid_from")
            else None
        ),
        "invalid_at": (
            _time(v, f"{path}.validity.invalid_at", node.validity.invalid_at)
            if node.validity.HasField("invalid_at")
            else None
        ),
        "mention_count": max(node.reinforcement.mention_count, 1),
        "cited_count": max(node.reinforcement.cited_count, 0),
        "last_reinforced_at": (
            _time(
                v, f"{path}.reinforcement.last_reinforced_at", node.reinforcement.last_reinforced_at
            )
            if node.reinforcement.HasField("last_reinforced_at")
            else None
        ),
        "metadata": dict(node.metadata),
    }
    built = _detail(v, f"{path}.{detail}", node, base)
    if len(v.items) > before or built is None:
        return None
    return built


def _detail(v: Violations, path: str, node: pb.Memory, base: Mapping[str, Any]) -> Memory | None:
    fields: dict[str, Any] = dict(base)
    model: type[MemoryBase]
    if node.HasField("episode"):
        ep = node.episode
        check_id(v, f"{path}.source_id", ep.source_id, MAX_SOURCE_ID_CHARS)
        _enum(v, f"{path}.source_type", ep.source_type, SOURCE_TYPES)
        _enum(v, f"{path}.role", ep.role, CHAT_ROLES)
        if len(ep.speaker) > MAX_SPEAKER_CHARS:
            v.add(
                f"{path}.speaker", f"{path}.speaker must be at most {MAX_SPEAKER_CHARS} characters"
            )
        if len(ep.summary.encode("utf-8")) > MAX_TEXT_BYTES:
            v.add(f"{path}.summary", f"{path}.summary must be at most {MAX_TEXT_BYTES} bytes")
        fields.update(
            source_id=ep.source_id,
            source_type=SOURCE_TYPES.get(ep.source_type),
            speaker=ep.speaker,
            role=CHAT_ROLES.get(ep.role),
            summary=ep.summary,
            extraction=_extraction(v, f"{path}.extraction", ep.extraction),
        )
        model = Episode
    elif node.HasField("psyche"):
        _enum(v, f"{path}.kind", node.psyche.kind, PSYCHE_KINDS)
        _short(v, f"{path}.key", node.psyche.key)
        fields.update(kind=PSYCHE_KINDS.get(node.psyche.kind), key=node.psyche.key)
        model = Psyche
    elif node.HasField("goal"):
        goal = node.goal
        _enum(v, f"{path}.status", goal.status, GOAL_STATUSES)
        _short(v, f"{path}.key", goal.key)
        due = _time(v, f"{path}.due_at", goal.due_at) if goal.HasField("due_at") else None
        fields.update(status=GOAL_STATUSES.get(goal.status), key=goal.key, due_at=due)
        model = Goal
    elif node.HasField("entity"):
        entity = node.entity
        _short(v, f"{path}.name", entity.name, required=True)
        _enum(v, f"{path}.kind", entity.kind, ENTITY_KINDS)
        for k, alias in enumerate(entity.aliases):
            _short(v, f"{path}.aliases[{k}]", alias, required=True)
        if len(entity.description.encode("utf-8")) > MAX_TEXT_BYTES:
            v.add(
                f"{path}.description", f"{path}.description must be at most {MAX_TEXT_BYTES} bytes"
            )
        fields.update(
            name=entity.name,
            kind=ENTITY_KINDS.get(entity.kind),
            aliases=list(entity.aliases),
            description=entity.description,
        )
        model = Entity
    else:
        fact = node.fact
        check_id(v, f"{path}.subject_id", fact.subject_id, MAX_ID_CHARS)
        _short(v, f"{path}.predicate", fact.predicate, required=True)
        if fact.object_id:
            check_id(v, f"{path}.object_id", fact.object_id, MAX_ID_CHARS)
        _short(v, f"{path}.object_value", fact.object_value)
        fields.update(
            subject_id=fact.subject_id,
            predicate=fact.predicate,
            object_id=fact.object_id,
            object_value=fact.object_value,
        )
        model = Fact
    if v.items:
        return None
    built: Memory = model.model_validate(fields)
    return built


def _extraction(v: Violations, path: str, status: pb.ExtractionStatus) -> ExtractionStatus:
    _enum(v, f"{path}.state", status.state, EXTRACTION_STATES)
    if status.attempts < 0:
        v.add(f"{path}.attempts", f"{path}.attempts must not be negative")
    _short(v, f"{path}.extractor", status.extractor)
    if len(status.last_error) > MAX_TEXT_BYTES:
        v.add(f"{path}.last_error", f"{path}.last_error must be at most {MAX_TEXT_BYTES} bytes")
    return ExtractionStatus(
        state=EXTRACTION_STATES.get(status.state, ExtractionState.PENDING),
        attempts=max(status.attempts, 0),
        last_error=status.last_error,
        extractor=status.extractor,
        updated_at=(
            _time(v, f"{path}.updated_at", status.updated_at)
            if status.HasField("updated_at")
            else None
        ),
        next_attempt_at=(
            _time(v, f"{path}.next_attempt_at", status.next_attempt_at)
            if status.HasField("next_attempt_at")
            else None
        ),
    )


MAX_CHUNK_RECORDS = 1000


def export_request(tenant: str, req: gpb.ExportGraphRequest) -> tuple[UserRef, int]:
    """The user and the records per chunk (0 means the default)."""
    v = Violations()
    user = user_ref(tenant, v, req.user_id)
    check_range(v, "chunk_size", req.chunk_size, 0, MAX_CHUNK_RECORDS)
    v.raise_if_any()
    return user, req.chunk_size
