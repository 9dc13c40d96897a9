"""`OfflineExtractor`: the rule-based `Extractor` used when no LLM is configured.

Pure CPU, no I/O, no models: a typical chat line takes well under a millisecond, so `extract`
runs inline on the event loop rather than paying for a thread hop.
"""

from __future__ import annotations

import re

from persona_server.domain.models import Entity, EntityKind, Goal
from persona_server.extraction.offline.contradictions import find_contradictions
from persona_server.extraction.offline.dates import find_dates
from persona_server.extraction.offline.entities import KnownNames, find_mentions
from persona_server.extraction.offline.goals import find_goals
from persona_server.extraction.offline.psyche import find_psyche
from persona_server.extraction.offline.relations import find_relations
from persona_server.extraction.offline.subject import Subject
from persona_server.extraction.offline.text import (
    blank_links,
    expand,
    fold,
    iter_sentence_spans,
    split_sentences,
)
from persona_server.extraction.resolution import normalise_name, resolve
from persona_server.ports.extractor import (
    ExtractedEntity,
    ExtractionInput,
    ExtractionResult,
)

SUMMARY_CHARS = 200
_SPACES = re.compile(r"\s+")


def summarise(text: str, limit: int = SUMMARY_CHARS) -> str:
    """The first sentence that says something (skips "Hey Mel!"), cut at a word boundary."""
    clean = fold(text).strip()
    if "\n" in clean or "  " in clean or "\t" in clean:
        clean = _SPACES.sub(" ", clean)
    if not clean:
        return ""
    first: tuple[int, int] | None = None
    chosen = ""
    for s, e in iter_sentence_spans(clean):
        first = first or (s, e)
        if clean.count(" ", s, e) >= 4:  # five words or more
            chosen = clean[s:e]
            break
    if not chosen:
        s, e = first or (0, len(clean))
        chosen = clean[s:e]
    if len(chosen) <= limit:
        return chosen
    cut = chosen[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:-")
    return cut + "\u2026"


def _merge_mentions(raw: list[ExtractedEntity]) -> tuple[ExtractedEntity, ...]:
    """Collapse repeated mentions ("Melanie Smith" ... "Melanie") into one entity each.

    Resolving against no existing entities does exactly that; most lines name every entity
    once, so skip it when all names are distinct and no person could be another's first name.
    """
    keys = [normalise_name(e.name) for e in raw]
    firsts = {k.split(" ", 1)[0] for k in keys if " " in k}
    if len(set(keys)) == len(keys) and not any(k in firsts for k in keys):
        return tuple(raw)
    return tuple(match.entity for match in resolve(raw, ()).matches)


class OfflineExtractor:
    """Deterministic English rules: dates, entities, relations, psyche, goals, contradictions."""

    name = "offline-rules-v1"

    async def extract(self, item: ExtractionInput) -> ExtractionResult:
        return self.extract_sync(item)

    def extract_sync(self, item: ExtractionInput) -> ExtractionResult:
        text = expand(blank_links(fold(item.text)))
        sentences = split_sentences(text)
        subject = Subject.for_speaker(item.speaker)
        context_entities = [m for m in item.context if isinstance(m, Entity)]
        known = KnownNames.build(subject.name if subject.is_person else "", context_entities)

        mentions = find_mentions(text, sentences, known)
        dates = find_dates(text, sentences, item.occurred_at)
        relations, kinds = find_relations(
            text, sentences, mentions, subject, dates, item.occurred_at
        )
        psyche = find_psyche(text, sentences, subject, dates)
        goals = find_goals(
            text,
            sentences,
            subject,
            dates,
            item.occurred_at,
            [m for m in item.context if isinstance(m, Goal)],
        )

        raw: list[ExtractedEntity] = []
        if subject.is_person:
            raw.append(ExtractedEntity(name=subject.name, kind=EntityKind.PERSON))
        raw.extend(ExtractedEntity(name=m.name, kind=kinds.get(m.start, m.kind)) for m in mentions)
        entities = _merge_mentions(raw)

        return ExtractionResult(
            summary=summarise(item.text),
            entities=entities,
            relations=tuple(relations),
            psyche=tuple(psyche),
            goals=tuple(goals),
            dates=tuple(h.date for h in dates),
            contradicts=tuple(find_contradictions(relations, psyche, item.context, subject)),
        )
