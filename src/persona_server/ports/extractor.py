"""The `Extractor` port: one ingested item's text in, typed graph material out.

Implemented by the deterministic offline extractor (rules) and later by an LLM extractor, so the
result types carry only what both can produce. Names, not ids: an extractor never sees the store,
so entities and relations refer to each other by the names they were extracted with, and the
ingest service resolves names to entity ids (see `persona_server.extraction.resolution`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from persona_server.domain.models import EntityKind, GoalStatus, Memory, PsycheKind

# The subject name used for first-person statements when the item names no speaker
# ("I moved to Lisbon" -> ("user", "moved_to", "Lisbon")). It stands for the user the memory
# belongs to; it is never emitted as an `ExtractedEntity`.
USER_SUBJECT = "user"


@dataclass(frozen=True, slots=True)
class ExtractedEntity:
    name: str
    kind: EntityKind
    # Other surface forms seen in the same item: "Melanie" for "Melanie Smith", "Lee" for "Dr. Lee".
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExtractedRelation:
    """A fact: (subject, predicate, object). Subject and object are names as extracted."""

    subject: str
    predicate: str  # snake_case, e.g. "moved_to", "works_at", "sister_of"
    object: str
    # False when the object is a literal value ("married", "34", "a small town"), not an entity.
    object_is_entity: bool
    text: str  # the fact as a readable sentence: "Caroline moved to Sweden"
    # When the sentence dates the fact ("I moved to Sweden last year"): the start of that span.
    # None means "as of the item's occurred_at".
    valid_from: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExtractedPsyche:
    kind: PsycheKind
    text: str  # readable: "Caroline loves hiking in the mountains"
    key: str  # normalised merge key, "<slot>:<stemmed object>", e.g. "likes:hik"


@dataclass(frozen=True, slots=True)
class ExtractedGoal:
    text: str
    status: GoalStatus
    # Normalised merge key. An ACHIEVED/ABANDONED goal that matches an intention already in the
    # context reuses that goal's key, so the store updates the goal instead of adding another.
    key: str
    due_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ExtractedDate:
    """A date expression and the span it names, resolved against occurred_at.

    The span is half-open, [start, end), timezone-aware UTC: "yesterday" said on 2023-05-08 is
    [2023-05-07T00:00Z, 2023-05-08T00:00Z).
    """

    text: str
    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class ExtractionResult:
    summary: str
    entities: tuple[ExtractedEntity, ...]
    relations: tuple[ExtractedRelation, ...]
    psyche: tuple[ExtractedPsyche, ...]
    goals: tuple[ExtractedGoal, ...]
    dates: tuple[ExtractedDate, ...]
    # Ids of existing memories from `ExtractionInput.context` that this text supersedes: facts
    # on a single-valued predicate with a different object, and psyche entries it reverses
    # ("I hate X" against "likes:X"). The ingest service invalidates them.
    contradicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ExtractionInput:
    text: str
    occurred_at: datetime  # event time; relative dates resolve against it, never against now
    speaker: str = ""  # who says `text`; first-person statements are about them
    context: tuple[Memory, ...] = ()  # relevant existing memories of the user


class Extractor(Protocol):
    name: str  # identifies the extractor and its version, e.g. "offline-rules-v1"

    async def extract(self, item: ExtractionInput) -> ExtractionResult: ...
