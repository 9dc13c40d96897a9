"""A small graph written straight through the store port, with every id and time fixed, so
that its export can be written down in full (`EXPECTED`).

It has what an export must carry: a back-filled episode (ingest order differs from chain
order), extraction done, failed and pending (both with a retry far in the future, so no worker
touches them), metadata, an invalidated fact kept as history, a literal-valued fact (no OBJECT
edge), a psyche item confirmed by two episodes, a goal with a due date, aliases.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np

from persona_server.domain.models import (
    ChatRole,
    Entity,
    EntityKind,
    Episode,
    ExtractionState,
    ExtractionStatus,
    Fact,
    Goal,
    Psyche,
    PsycheKind,
    SourceType,
    UserRef,
)
from persona_server.ports.graph_store import DerivedWrite, GraphStore


def t(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


REC = t("2024-03-06T09:00:00")


def _episodes() -> list[Episode]:
    return [
        Episode(
            id="ep_01",
            text="I moved to Lisbon in March",
            occurred_at=t("2024-03-01T10:00:00"),
            recorded_at=REC,
            source_id="m1",
            source_type=SourceType.CHAT_MESSAGE,
            speaker="Sam",
            role=ChatRole.USER,
            metadata={"channel": "sms", "app": "notes"},
            extraction=ExtractionStatus(
                state=ExtractionState.DONE,
                attempts=1,
                extractor="hand-v1",
                updated_at=t("2024-03-06T09:00:01.250000"),
            ),
        ),
        Episode(
            id="ep_02",
            text="My sister Ana lives in Porto",
            occurred_at=t("2024-03-05T18:30:00"),
            recorded_at=REC,
            source_id="m2",
            source_type=SourceType.CHAT_MESSAGE,
            speaker="Sam",
            role=ChatRole.USER,
            summary="Sam's sister Ana lives in Porto.",
            extraction=ExtractionStatus(
                state=ExtractionState.FAILED,
                attempts=2,
                last_error="model timed out",
                extractor="hand-v1",
                updated_at=t("2024-03-06T09:05:00"),
                next_attempt_at=t("2031-01-01T00:00:00"),
            ),
        ),
        # Back-filled: ingested last, first in event time.
        Episode(
            id="ep_03",
            text="Booked a marathon for next spring",
            occurred_at=t("2024-02-20T07:15:00"),
            recorded_at=REC,
            source_id="m3",
            source_type=SourceType.TEXT,
            extraction=ExtractionStatus(
                state=ExtractionState.PENDING,
                attempts=0,
                updated_at=t("2024-03-06T09:00:00"),
                next_attempt_at=t("2031-06-01T00:00:00"),
            ),
        ),
    ]


def _at(n: int) -> datetime:
    return t(f"2024-03-06T09:01:{n:02d}")


SAM = Entity(
    id="en_sam",
    text="Sam",
    name="Sam",
    kind=EntityKind.PERSON,
    aliases=["Samuel"],
    occurred_at=t("2024-03-01T10:00:00"),
    recorded_at=_at(1),
    mention_count=2,
    last_reinforced_at=_at(5),
)
LISBON = Entity(
    id="en_lisbon",
    text="Lisbon",
    name="Lisbon",
    kind=EntityKind.PLACE,
    occurred_at=t("2024-03-01T10:00:00"),
    recorded_at=_at(2),
)
ANA = Entity(
    id="en_ana",
    text="Ana",
    name="Ana",
    kind=EntityKind.PERSON,
    description="Sam's sister",
    occurred_at=t("2024-03-05T18:30:00"),
    recorded_at=_at(5),
)
PORTO = Entity(
    id="en_porto",
    text="Porto",
    name="Porto",
    kind=EntityKind.PLACE,
    occurred_at=t("2024-03-05T18:30:00"),
    recorded_at=_at(5),
)
LIVES_LISBON = Fact(
    id="fa_lives_lisbon",
    text="Sam lives in Lisbon",
    subject_id="en_sam",
    predicate="lives_in",
    object_id="en_lisbon",
    occurred_at=t("2024-03-01T10:00:00"),
    recorded_at=_at(3),
    valid_from=t("2024-03-01T00:00:00"),
)
LIVED_PORTO = Fact(
    id="fa_lived_porto",
    text="Sam lives in Porto",
    subject_id="en_sam",
    predicate="lives_in",
    object_id="en_porto",
    occurred_at=t("2024-03-01T10:00:00"),
    recorded_at=_at(3),
    valid_from=t("2020-01-01T00:00:00"),
    invalid_at=t("2024-03-01T00:00:00"),
)
SISTER = Fact(
    id="fa_sister",
    text="Ana is Sam's sister",
    subject_id="en_ana",
    predicate="sister_of",
    object_id="en_sam",
    occurred_at=t("2024-03-05T18:30:00"),
    recorded_at=_at(6),
)
AGE = Fact(
    id="fa_age",
    text="Ana is 34",
    subject_id="en_ana",
    predicate="age",
    object_value="34",
    occurred_at=t("2024-03-05T18:30:00"),
    recorded_at=_at(6),
)
WINDOW = Psyche(
    id="ps_window",
    text="Sam prefers window seats",
    kind=PsycheKind.PREFERENCE,
    key="prefers window seats",
    occurred_at=t("2024-03-01T10:00:00"),
    recorded_at=_at(4),
    mention_count=3,
    last_reinforced_at=_at(7),
)
MARATHON = Goal(
    id="go_marathon",
    text="Sam wants to run a marathon",
    key="run a marathon",
    due_at=t("2025-04-01T00:00:00"),
    occurred_at=t("2024-02-20T07:15:00"),
    recorded_at=_at(8),
    metadata={"source": "import"},
)


async def write_handmade(store: GraphStore, user: UserRef, dimension: int) -> None:
    episodes = _episodes()
    rng = np.random.default_rng(7)

    def vec() -> Any:
        v = rng.standard_normal(dimension).astype(np.float32)
        return v / np.linalg.norm(v)

    await store.episodes.put_batch(
        user, episodes, np.stack([vec() for _ in episodes]), replace=False
    )
    first = [SAM, LISBON, LIVES_LISBON, LIVED_PORTO, WINDOW]
    second = [ANA, PORTO, SISTER, AGE, WINDOW.model_copy(update={"episode_ids": ["ep_01"]})]
    await store.memories.write_derived(
        user,
        DerivedWrite(
            "ep_01", first, {m.id: vec() for m in first}, mentions=["en_sam", "en_lisbon"]
        ),
        DerivedWrite(
            "ep_02",
            [*second, SAM.model_copy(update={"episode_ids": ["ep_01"]})],
            {m.id: vec() for m in second},
            mentions=["en_ana", "en_porto", "en_sam"],
        ),
        DerivedWrite("ep_03", [MARATHON], {MARATHON.id: vec()}),
    )


def _ep(source_id: str, source_type: str, speaker: str, role: str, summary: str, **ex: Any) -> Any:
    return {
        "source_id": source_id,
        "source_type": source_type,
        "speaker": speaker,
        "role": role,
        "summary": summary,
        "extraction": ex,
    }


# The export of `write_handmade`, written out by hand (after the header line).
EXPECTED: list[dict[str, Any]] = [
    # Episodes, in ingest order.
    {
        "record": "node",
        "id": "ep_01",
        "type": "episode",
        "text": "I moved to Lisbon in March",
        "occurred_at": "2024-03-01T10:00:00Z",
        "recorded_at": "2024-03-06T09:00:00Z",
        "mention_count": 1,
        "metadata": {"app": "notes", "channel": "sms"},
        "episode": _ep(
            "m1",
            "chat_message",
            "Sam",
            "user",
            "",
            state="done",
            attempts=1,
            last_error="",
            extractor="hand-v1",
            updated_at="2024-03-06T09:00:01.250000Z",
        ),
    },
    {
        "record": "node",
        "id": "ep_02",
        "type": "episode",
        "text": "My sister Ana lives in Porto",
        "occurred_at": "2024-03-05T18:30:00Z",
        "recorded_at": "2024-03-06T09:00:00Z",
        "mention_count": 1,
        "metadata": {},
        "episode": _ep(
            "m2",
            "chat_message",
            "Sam",
            "user",
            "Sam's sister Ana lives in Porto.",
            state="failed",
            attempts=2,
            last_error="model timed out",
            extractor="hand-v1",
            updated_at="2024-03-06T09:05:00Z",
            next_attempt_at="2031-01-01T00:00:00Z",
        ),
    },
    {
        "record": "node",
        "id": "ep_03",
        "type": "episode",
        "text": "Booked a marathon for next spring",
        "occurred_at": "2024-02-20T07:15:00Z",
        "recorded_at": "2024-03-06T09:00:00Z",
        "mention_count": 1,
        "metadata": {},
        "episode": _ep(
            "m3",
            "text",
            "",
            "unspecified",
            "",
            state="pending",
            attempts=0,
            last_error="",
            extractor="",
            updated_at="2024-03-06T09:00:00Z",
            next_attempt_at="2031-06-01T00:00:00Z",
        ),
    },
    # Derived memories, by record time then id.
    {
        "record": "node",
        "id": "en_sam",
        "type": "entity",
        "text": "Sam",
        "occurred_at": "2024-03-01T10:00:00Z",
        "recorded_at": "2024-03-06T09:01:01Z",
        "mention_count": 2,
        "last_reinforced_at": "2024-03-06T09:01:05Z",
        "metadata": {},
        "entity": {"name": "Sam", "kind": "person", "aliases": ["Samuel"], "description": ""},
    },
    {
        "record": "node",
        "id": "en_lisbon",
        "type": "entity",
        "text": "Lisbon",
        "occurred_at": "2024-03-01T10:00:00Z",
        "recorded_at": "2024-03-06T09:01:02Z",
        "mention_count": 1,
        "metadata": {},
        "entity": {"name": "Lisbon", "kind": "place", "aliases": [], "description": ""},
    },
    {
        "record": "node",
        "id": "fa_lived_porto",
        "type": "fact",
        "text": "Sam lives in Porto",
        "occurred_at": "2024-03-01T10:00:00Z",
        "recorded_at": "2024-03-06T09:01:03Z",
        "valid_from": "2020-01-01T00:00:00Z",
        "invalid_at": "2024-03-01T00:00:00Z",
        "mention_count": 1,
        "metadata": {},
        "fact": {
            "subject_id": "en_sam",
            "predicate": "lives_in",
            "object_id": "en_porto",
            "object_value": "",
        },
    },
    {
        "record": "node",
        "id": "fa_lives_lisbon",
        "type": "fact",
        "text": "Sam lives in Lisbon",
        "occurred_at": "2024-03-01T10:00:00Z",
        "recorded_at": "2024-03-06T09:01:03Z",
        "valid_from": "2024-03-01T00:00:00Z",
        "mention_count": 1,
        "metadata": {},
        "fact": {
            "subject_id": "en_sam",
            "predicate": "lives_in",
            "object_id": "en_lisbon",
            "object_value": "",
        },
    },
    {
        "record": "node",
        "id": "ps_window",
        "type": "psyche",
        "text": "Sam prefers window seats",
        "occurred_at": "2024-03-01T10:00:00Z",
        "recorded_at": "2024-03-06T09:01:04Z",
        "mention_count": 3,
        "last_reinforced_at": "2024-03-06T09:01:07Z",
        "metadata": {},
        "psyche": {"kind": "preference", "key": "prefers window seats"},
    },
    {
        "record": "node",
        "id": "en_ana",
        "type": "entity",
        "text": "Ana",
        "occurred_at": "2024-03-05T18:30:00Z",
        "recorded_at": "2024-03-06T09:01:05Z",
        "mention_count": 1,
        "metadata": {},
        "entity": {"name": "Ana", "kind": "person", "aliases": [], "description": "Sam's sister"},
    },
    {
        "record": "node",
        "id": "en_porto",
        "type": "entity",
        "text": "Porto",
        "occurred_at": "2024-03-05T18:30:00Z",
        "recorded_at": "2024-03-06T09:01:05Z",
        "mention_count": 1,
        "metadata": {},
        "entity": {"name": "Porto", "kind": "place", "aliases": [], "description": ""},
    },
    {
        "record": "node",
        "id": "fa_age",
        "type": "fact",
        "text": "Ana is 34",
        "occurred_at": "2024-03-05T18:30:00Z",
        "recorded_at": "2024-03-06T09:01:06Z",
        "mention_count": 1,
        "metadata": {},
        "fact": {"subject_id": "en_ana", "predicate": "age", "object_id": "", "object_value": "34"},
    },
    {
        "record": "node",
        "id": "fa_sister",
        "type": "fact",
        "text": "Ana is Sam's sister",
        "occurred_at": "2024-03-05T18:30:00Z",
        "recorded_at": "2024-03-06T09:01:06Z",
        "mention_count": 1,
        "metadata": {},
        "fact": {
            "subject_id": "en_ana",
            "predicate": "sister_of",
            "object_id": "en_sam",
            "object_value": "",
        },
    },
    {
        "record": "node",
        "id": "go_marathon",
        "type": "goal",
        "text": "Sam wants to run a marathon",
        "occurred_at": "2024-02-20T07:15:00Z",
        "recorded_at": "2024-03-06T09:01:08Z",
        "mention_count": 1,
        "metadata": {"source": "import"},
        "goal": {"status": "active", "due_at": "2025-04-01T00:00:00Z", "key": "run a marathon"},
    },
    # NEXT in chain order: the back-filled ep_03 comes first.
    {"record": "edge", "type": "NEXT", "from": "ep_03", "to": "ep_01"},
    {"record": "edge", "type": "NEXT", "from": "ep_01", "to": "ep_02"},
    # MENTIONS by episode (ingest order), then entity id.
    {"record": "edge", "type": "MENTIONS", "from": "ep_01", "to": "en_lisbon"},
    {"record": "edge", "type": "MENTIONS", "from": "ep_01", "to": "en_sam"},
    {"record": "edge", "type": "MENTIONS", "from": "ep_02", "to": "en_ana"},
    {"record": "edge", "type": "MENTIONS", "from": "ep_02", "to": "en_porto"},
    {"record": "edge", "type": "MENTIONS", "from": "ep_02", "to": "en_sam"},
    # DERIVED_FROM by memory id, then episode (ingest order).
    {"record": "edge", "type": "DERIVED_FROM", "from": "en_ana", "to": "ep_02"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "en_lisbon", "to": "ep_01"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "en_porto", "to": "ep_02"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "en_sam", "to": "ep_01"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "en_sam", "to": "ep_02"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "fa_age", "to": "ep_02"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "fa_lived_porto", "to": "ep_01"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "fa_lives_lisbon", "to": "ep_01"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "fa_sister", "to": "ep_02"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "go_marathon", "to": "ep_03"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "ps_window", "to": "ep_01"},
    {"record": "edge", "type": "DERIVED_FROM", "from": "ps_window", "to": "ep_02"},
    # SUBJECT, then OBJECT, by fact id (fa_age has a literal object: no OBJECT edge).
    {"record": "edge", "type": "SUBJECT", "from": "fa_age", "to": "en_ana"},
    {"record": "edge", "type": "SUBJECT", "from": "fa_lived_porto", "to": "en_sam"},
    {"record": "edge", "type": "SUBJECT", "from": "fa_lives_lisbon", "to": "en_sam"},
    {"record": "edge", "type": "SUBJECT", "from": "fa_sister", "to": "en_ana"},
    {"record": "edge", "type": "OBJECT", "from": "fa_lived_porto", "to": "en_porto"},
    {"record": "edge", "type": "OBJECT", "from": "fa_lives_lisbon", "to": "en_lisbon"},
    {"record": "edge", "type": "OBJECT", "from": "fa_sister", "to": "en_sam"},
]
