"""What the services return, independent of any transport."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from persona_server.domain.models import ChangeKind, ExtractionStatus, Memory, MemoryType
from persona_server.ports.graph_store import WriteOutcome


@dataclass(frozen=True)
class ChannelHit:
    channel: str  # "vector" | "text" | "graph" | "temporal" | "time"
    rank: int  # 1-based
    score: float


@dataclass(frozen=True)
class ScoredMemory:
    memory: Memory
    score: float
    channels: list[ChannelHit] = field(default_factory=list)
    # A passage: what Recall joined to `memory` (its neighbouring episodes in one conversation
    # that matched the query too, and memories derived from those episodes), in event-time
    # order, `memory` itself not included.
    joined: list[Memory] = field(default_factory=list)


@dataclass(frozen=True)
class RecallOutcome:
    results: list[ScoredMemory]
    context_block: str


@dataclass(frozen=True)
class IngestItemResult:
    episode_id: str
    source_id: str
    outcome: WriteOutcome
    extraction: ExtractionStatus


@dataclass(frozen=True)
class AskAnswer:
    answer: Any  # JSON value valid against the caller's schema
    citations: list[Memory]
    answered: bool


@dataclass(frozen=True)
class DeletedRef:
    memory_id: str
    memory_type: MemoryType


@dataclass(frozen=True)
class Change:
    kind: ChangeKind
    item: ScoredMemory | DeletedRef


@dataclass(frozen=True)
class SnapshotEvent:
    seq: int
    outcome: RecallOutcome


@dataclass(frozen=True)
class UpdateEvent:
    seq: int
    changes: list[Change]


@dataclass(frozen=True)
class HeartbeatEvent:
    seq: int
    at: datetime


StreamEvent = SnapshotEvent | UpdateEvent | HeartbeatEvent
