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
    # The instant the results' strength is computed at (services.decay_time): the caller shows
    # strength at it without reading the user's present again.
    strength_at: datetime | None = None


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
    """A memory named by id and type only: deleted, or no longer in a stream's context."""

    memory_id: str
    memory_type: MemoryType


@dataclass(frozen=True)
class Change:
    """One memory that entered, changed in or left a stream's context. `rank` is its 1-based
    place in the context after the event (within its group without a query); 0 when it is
    not in the context, and then `item` is a `DeletedRef` unless the memory was invalidated."""

    kind: ChangeKind
    item: ScoredMemory | DeletedRef
    rank: int = 0

    @property
    def memory_id(self) -> str:
        return self.item.memory_id if isinstance(self.item, DeletedRef) else self.item.memory.id


@dataclass(frozen=True)
class Member:
    """One memory of a stream's context, by reference."""

    memory_id: str
    memory_type: MemoryType
    rank: int
    score: float


# Stream events. `seq` is the change-log position the event brings the client to, and `context`
# the ids of the memories the client holds after it (both go into the event's resume token).
# Compared by identity (eq=False): one event object may go to every subscriber of a context,
# and the transport converts it once.


@dataclass(frozen=True, eq=False)
class WholeContextEvent:
    seq: int
    outcome: RecallOutcome
    context: tuple[str, ...] = ()


class SnapshotEvent(WholeContextEvent):
    """The context when a subscription starts."""


class ResyncEvent(WholeContextEvent):
    """The context afresh, replacing what the client holds: the stream fell behind its buffer,
    or resumed from a token that does not name its context."""


@dataclass(frozen=True, eq=False)
class UpdateEvent:
    seq: int
    changes: list[Change]
    members: list[Member] = field(default_factory=list)
    context: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class HeartbeatEvent:
    seq: int
    at: datetime
    context: tuple[str, ...] = ()


StreamEvent = SnapshotEvent | ResyncEvent | UpdateEvent | HeartbeatEvent
