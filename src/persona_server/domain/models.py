"""The typed memory model: what Persona knows about a user, independent of any transport or store.

Every memory belongs to exactly one (tenant, user). Derived memories (psyche, goals, entities,
facts) carry provenance: the episodes they came from and those episodes' source ids.
Times are timezone-aware UTC datetimes; `occurred_at` is event time, `recorded_at` record time.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class MemoryType(StrEnum):
    EPISODE = "episode"
    PSYCHE = "psyche"
    GOAL = "goal"
    ENTITY = "entity"
    FACT = "fact"


class SourceType(StrEnum):
    TEXT = "text"
    CHAT_MESSAGE = "chat_message"
    EMAIL = "email"
    DOCUMENT = "document"
    EVENT = "event"


class ChatRole(StrEnum):
    UNSPECIFIED = "unspecified"
    USER = "user"
    ASSISTANT = "assistant"
    OTHER = "other"


class PsycheKind(StrEnum):
    TRAIT = "trait"
    VALUE = "value"
    PREFERENCE = "preference"


class GoalStatus(StrEnum):
    ACTIVE = "active"
    ACHIEVED = "achieved"
    ABANDONED = "abandoned"


class EntityKind(StrEnum):
    PERSON = "person"
    PLACE = "place"
    ORGANIZATION = "organization"
    THING = "thing"
    EVENT = "event"
    OTHER = "other"


class ExtractionState(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class UserRef(BaseModel):
    """The scope of every store call: a user id is only meaningful inside its tenant."""

    model_config = ConfigDict(frozen=True)

    tenant: str
    user_id: str


class ExtractionStatus(BaseModel):
    state: ExtractionState = ExtractionState.PENDING
    attempts: int = 0
    last_error: str = ""
    extractor: str = ""
    updated_at: datetime | None = None
    next_attempt_at: datetime | None = None


class MemoryBase(BaseModel):
    """Fields every memory shares."""

    model_config = ConfigDict(frozen=False)

    id: str
    text: str
    occurred_at: datetime | None = None
    recorded_at: datetime
    valid_from: datetime | None = None
    invalid_at: datetime | None = None
    source_ids: list[str] = Field(default_factory=list)
    episode_ids: list[str] = Field(default_factory=list)
    # Reinforcement: mentioned again at ingest (`mention_count`) or cited by an AskStructured
    # answer (`cited_count`); `last_reinforced_at` is the event time of the latest one. Strength
    # is computed from these at read time (domain.strength); Recall never writes.
    mention_count: int = 1
    cited_count: int = 0
    last_reinforced_at: datetime | None = None
    metadata: dict[str, str] = Field(default_factory=dict)

    @property
    def is_valid(self) -> bool:
        return self.invalid_at is None


class Episode(MemoryBase):
    type: Literal[MemoryType.EPISODE] = MemoryType.EPISODE
    source_id: str
    source_type: SourceType = SourceType.TEXT
    speaker: str = ""
    role: ChatRole = ChatRole.UNSPECIFIED
    summary: str = ""
    # Position in the user's ingest order; breaks ties between equal `occurred_at`.
    seq: int = 0
    extraction: ExtractionStatus = Field(default_factory=ExtractionStatus)


class Psyche(MemoryBase):
    type: Literal[MemoryType.PSYCHE] = MemoryType.PSYCHE
    kind: PsycheKind = PsycheKind.PREFERENCE
    # Normalised key used to merge repeated statements of the same preference or trait.
    key: str = ""


class Goal(MemoryBase):
    type: Literal[MemoryType.GOAL] = MemoryType.GOAL
    status: GoalStatus = GoalStatus.ACTIVE
    due_at: datetime | None = None
    key: str = ""


class Entity(MemoryBase):
    type: Literal[MemoryType.ENTITY] = MemoryType.ENTITY
    name: str
    kind: EntityKind = EntityKind.OTHER
    aliases: list[str] = Field(default_factory=list)
    description: str = ""


class Fact(MemoryBase):
    """A relation between two entities, or an attribute of one (object_value)."""

    type: Literal[MemoryType.FACT] = MemoryType.FACT
    subject_id: str
    predicate: str
    object_id: str = ""
    object_value: str = ""


Memory = Annotated[Episode | Psyche | Goal | Entity | Fact, Field(discriminator="type")]


class ChangeKind(StrEnum):
    ADDED = "added"
    UPDATED = "updated"
    INVALIDATED = "invalidated"
    DELETED = "deleted"
    # Only in a stream's updates, never in the change log: an unchanged memory's place in the
    # stream's context changed.
    ENTERED = "entered"
    LEFT = "left"


class MemoryChange(BaseModel):
    """One entry of a user's change log; `seq` is monotonic per user and is the resume point."""

    seq: int
    kind: ChangeKind
    memory_id: str
    memory_type: MemoryType
    at: datetime
