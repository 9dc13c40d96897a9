"""Validated requests, as the services receive them from any transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from persona_server.domain.models import ChatRole, MemoryType, SourceType, UserRef
from persona_server.ports.graph_store import MemoryFilter, Vector
from persona_server.services.resume_token import ResumePoint


@dataclass(frozen=True)
class NewItem:
    text: str
    source_id: str  # "" = the server assigns one
    occurred_at: datetime | None  # None = time of receipt
    source_type: SourceType = SourceType.TEXT
    speaker: str = ""
    role: ChatRole = ChatRole.UNSPECIFIED
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestCommand:
    user: UserRef
    items: list[NewItem]
    replace: bool = False
    wait_for_extraction: bool = False


@dataclass(frozen=True)
class RecallQuery:
    user: UserRef
    query: str
    max_results: int
    filter: MemoryFilter = field(default_factory=MemoryFilter)
    explain: bool = False
    # The query's embedding when the caller has it already (a context stream embeds its query
    # once and recalls it again on every change).
    query_vector: Vector | None = None
    # Group a sitting's episodes into passages (`RecallResult.joined`). A context stream asks
    # for single memories: its updates say which memory entered or left, at which rank.
    passages: bool = True
    # Return dormant memories too (domain.strength: derived memories weaker than the forget
    # threshold at `filter.as_of`, or now).
    include_dormant: bool = False


@dataclass(frozen=True)
class AskQuery:
    user: UserRef
    question: str
    schema: dict[str, Any]
    max_memories: int = 20


@dataclass(frozen=True)
class StreamQuery:
    user: UserRef
    query: str
    max_results: int = 10
    types: frozenset[MemoryType] = frozenset()
    resume_after: ResumePoint | None = None  # from a resume token
    heartbeat_s: float = 15.0
    include_dormant: bool = False


@dataclass(frozen=True)
class ListQuery:
    user: UserRef
    page_size: int
    cursor: str
    filter: MemoryFilter = field(default_factory=MemoryFilter)
