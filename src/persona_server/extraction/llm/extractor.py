"""`LlmExtractor`: the `Extractor` port backed by one structured LLM call per item.

The model sees the item and the relevant existing memories (`ExtractionInput.context`, gathered
by the pipeline before the call) and returns entities, relations, psyche, goals and the
existing memories the item contradicts. Everything it returns is checked here: enums and
shapes by the schema, refs against the context table (a model cannot invalidate a memory it
was not shown), dates resolved deterministically against `occurred_at` from the date phrase the
model quotes, never from its arithmetic.

Cost: one call per item, a repair call only when the answer does not fit the schema, and at
most one small `disambiguate` call when deterministic entity resolution is left with ambiguous
names. Calls are charged to the `LlmScope` the caller opened (tenant and per-item budget).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from persona_server.domain.models import (
    Entity,
    EntityKind,
    Fact,
    Goal,
    GoalStatus,
    Memory,
    Psyche,
    PsycheKind,
)
from persona_server.domain.names import normalise_name
from persona_server.extraction.llm.prompts import (
    DISAMBIGUATION_FORMAT,
    EXTRACTION_FORMAT,
    context_refs,
    disambiguation_messages,
    extraction_messages,
    subject_name,
)
from persona_server.extraction.offline.dates import extract_dates
from persona_server.extraction.offline.text import split_sentences
from persona_server.ports.extractor import (
    ExtractedDate,
    ExtractedEntity,
    ExtractedGoal,
    ExtractedPsyche,
    ExtractedRelation,
    ExtractionInput,
    ExtractionResult,
)
from persona_server.ports.llm import (
    AmbiguousMention,
    BudgetLimits,
    LlmClient,
    LlmScope,
    current_scope,
    structured,
)

SUMMARY_CHARS = 300
_NON_KEY = re.compile(r"[^\w:]+")
_NON_PREDICATE = re.compile(r"[^a-z0-9]+")
# Names a model may use for the speaker; the pipeline adds the speaker itself.
_SELF_NAMES = frozenset({"i", "me", "myself", "user", "the user", "speaker", "the speaker"})


def _predicate(raw: str) -> str:
    return _NON_PREDICATE.sub("_", raw.strip().casefold()).strip("_")[:64]


def _key(raw: str, fallback: str) -> str:
    key = _NON_KEY.sub("_", raw.strip().casefold()).strip("_")
    return (key or _NON_KEY.sub("_", fallback.casefold()).strip("_"))[:120]


def _clean(text: Any, limit: int = 500) -> str:
    return " ".join(str(text or "").split())[:limit]


class DateResolver:
    """Turns a date phrase the model quoted into a datetime, against the item's time."""

    def __init__(self, text: str, occurred_at: datetime) -> None:
        self._occurred_at = occurred_at
        # In the item's own sentences first: "in March" means the next March in "I'm going to
        # Paris in March" and the last one in "I went to Paris in March".
        self.hits: list[ExtractedDate] = extract_dates(text, split_sentences(text), occurred_at)

    def start(self, phrase: str | None) -> datetime | None:
        if not phrase or not phrase.strip():
            return None
        wanted = phrase.strip().casefold()
        for hit in self.hits:
            found = hit.text.casefold()
            if found in wanted or wanted in found:
                return hit.start
        own = extract_dates(phrase, split_sentences(phrase), self._occurred_at)
        return own[0].start if own else None


class LlmExtractor:
    def __init__(self, llm: LlmClient, limits: BudgetLimits) -> None:
        self._llm = llm
        self._limits = limits
        self.name = f"llm-v1:{llm.model}"

    def _scope(self) -> LlmScope:
        # Callers that know the tenant open a scope; a bare call still gets a budget.
        return current_scope() or LlmScope(tenant="", budget=self._limits.new_budget())

    async def extract(self, item: ExtractionInput) -> ExtractionResult:
        refs = context_refs(item.context)
        answer = await structured(
            self._llm,
            extraction_messages(item, refs),
            EXTRACTION_FORMAT,
            scope=self._scope(),
            purpose="extract",
        )
        return to_result(answer.value, item, refs)

    async def disambiguate(
        self, item: ExtractionInput, mentions: Sequence[AmbiguousMention]
    ) -> dict[str, str | None]:
        if not mentions:
            return {}
        entities: dict[str, Entity] = {}
        for mention in mentions:
            for candidate in mention.candidates:
                if candidate.id not in {e.id for e in entities.values()}:
                    entities[f"E{len(entities) + 1}"] = candidate
        answer = await structured(
            self._llm,
            disambiguation_messages(item, mentions, entities),
            DISAMBIGUATION_FORMAT,
            scope=self._scope(),
            purpose="disambiguate",
        )
        allowed = {m.name: {c.id for c in m.candidates} for m in mentions}
        out: dict[str, str | None] = {m.name: None for m in mentions}
        for choice in answer.value.get("choices", []):
            name, ref = choice.get("mention"), choice.get("ref")
            chosen = entities.get(ref) if isinstance(ref, str) else None
            if name in allowed and chosen is not None and chosen.id in allowed[name]:
                out[name] = chosen.id
        return out


def to_result(
    value: Mapping[str, Any], item: ExtractionInput, refs: Mapping[str, Memory]
) -> ExtractionResult:
    """The model's JSON (already schema-valid) as an `ExtractionResult`, with every reference
    checked against what the model was shown."""
    speaker = subject_name(item)
    dates = DateResolver(item.text, item.occurred_at)

    def person(name: str) -> str:
        return speaker if name.strip().casefold() in _SELF_NAMES else name.strip()

    entities: dict[str, ExtractedEntity] = {}
    for raw in value.get("entities", []):
        name = _clean(raw.get("name"), 200)
        if not name or name.casefold() in _SELF_NAMES or normalise_name(name) == "":
            continue
        aliases = tuple(
            dict.fromkeys(
                a for a in (_clean(x, 200) for x in raw.get("aliases", [])) if a and a != name
            )
        )
        entities.setdefault(
            normalise_name(name), ExtractedEntity(name, EntityKind(raw["type"]), aliases)
        )
    known_names = {normalise_name(speaker), *entities}
    for ent in list(entities.values()):
        known_names.update(normalise_name(a) for a in ent.aliases)

    def ensure_entity(name: str) -> None:
        # A relation about someone the model forgot to list would otherwise fall back to the
        # speaker as subject: list them, kind unknown, so the fact lands on the right node.
        key = normalise_name(name)
        if key and key not in known_names:
            entities[key] = ExtractedEntity(name, EntityKind.OTHER)
            known_names.add(key)

    relations = []
    for raw in value.get("relations", []):
        subject = person(_clean(raw.get("subject"), 200))
        obj = _clean(raw.get("object"), 300)
        predicate = _predicate(str(raw.get("predicate", "")))
        if not subject or not obj or not predicate:
            continue
        is_entity = bool(raw.get("object_is_entity"))
        if is_entity:
            obj = person(obj)
            ensure_entity(obj)
        ensure_entity(subject)
        relations.append(
            ExtractedRelation(
                subject=subject,
                predicate=predicate,
                object=obj,
                object_is_entity=is_entity,
                text=_clean(raw.get("statement")) or f"{subject} {predicate} {obj}",
                valid_from=dates.start(raw.get("date_text")),
            )
        )

    psyche = []
    for raw in value.get("psyche", []):
        text = _clean(raw.get("statement"))
        if text:
            psyche.append(
                ExtractedPsyche(PsycheKind(raw["kind"]), text, _key(str(raw.get("key", "")), text))
            )

    goals = []
    for raw in value.get("goals", []):
        text = _clean(raw.get("statement"))
        if not text:
            continue
        key = _key(str(raw.get("key", "")), text)
        existing = refs.get(str(raw.get("existing_goal") or ""))
        if isinstance(existing, Goal):
            key = existing.key  # same key: the store updates that goal instead of adding one
        goals.append(
            ExtractedGoal(
                text=text,
                status=GoalStatus(raw["status"]),
                key=key,
                due_at=dates.start(raw.get("due_text")),
            )
        )

    contradicts = tuple(
        dict.fromkeys(
            refs[ref].id
            for ref in value.get("contradicts", [])
            if isinstance(refs.get(ref), Fact | Psyche | Goal)
        )
    )
    speaker_key = normalise_name(speaker)
    return ExtractionResult(
        summary=_clean(value.get("summary"), SUMMARY_CHARS),
        entities=tuple(e for k, e in entities.items() if k != speaker_key),
        relations=tuple(relations),
        psyche=tuple(psyche),
        goals=tuple(goals),
        dates=tuple(dates.hits),
        contradicts=contradicts,
    )
