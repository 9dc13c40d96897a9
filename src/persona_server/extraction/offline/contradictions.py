"""Which existing memories a new statement supersedes.

Facts: a new relation on a single-valued predicate (where someone lives, works, their
relationship status...) contradicts a valid context Fact on the same slot and subject with a
different object. Context facts carry ids, not names, so:
  - subject: the fact's `subject_id` is looked up among context Entity memories; when it is not
    there, the fact's text must start with the subject's name ("Caroline lives in ...", or
    "The user ..."/"User ..." for the unnamed user);
  - object: compared by name (the `object_id` entity from context, else `object_value`); when
    neither is known, the new object's name must not appear in the fact's text.
Psyche: "dislikes:X" reverses "likes:X" (and back); a new favourite or diet replaces the old one
with the same slot; "trait:not X" reverses "trait:X".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from persona_server.domain.models import Entity, Fact, Memory, Psyche
from persona_server.extraction.offline.subject import Subject
from persona_server.extraction.resolution import normalise_name
from persona_server.ports.extractor import USER_SUBJECT, ExtractedPsyche, ExtractedRelation

# Predicate -> the slot it fills. Predicates sharing a slot compete: moving somewhere replaces
# where one lives. Multi-valued predicates (visited, met, sister_of...) are absent on purpose.
SINGLE_VALUED: dict[str, str] = {
    "lives_in": "residence",
    "moved_to": "residence",
    "works_at": "employer",
    "works_as": "occupation",
    "from": "origin",
    "born_in": "birthplace",
    "grew_up_in": "hometown",
    "relationship_status": "relationship_status",
    "married_to": "spouse",
    "age": "age",
    "num_children": "num_children",
}
_SINGLE_PSYCHE_PREFIXES = ("favourite_", "diet")
_NON_WORD = re.compile(r"[^\w]+")


def _words(text: str) -> str:
    return f" {normalise_name(_NON_WORD.sub(' ', text))} "


def _same_subject(
    rel: ExtractedRelation, fact: Fact, entities: dict[str, Entity], subject: Subject
) -> bool:
    names = {normalise_name(rel.subject)}
    if rel.subject == subject.name:
        names.add(normalise_name(subject.display))
    if rel.subject == USER_SUBJECT:
        names |= {"user", "the user", "me"}
    ent = entities.get(fact.subject_id)
    if ent is not None:
        return any(normalise_name(n) in names for n in (ent.name, *ent.aliases))
    head = _words(fact.text)
    # normalise_name drops a leading "the", so "The user lives..." starts with " user ".
    return any(head.startswith(f" {n} ") for n in names if n)


def _same_object(rel: ExtractedRelation, fact: Fact, entities: dict[str, Entity]) -> bool:
    new = normalise_name(rel.object)
    known: list[str] = []
    ent = entities.get(fact.object_id) if fact.object_id else None
    if ent is not None:
        known = [ent.name, *ent.aliases]
    elif fact.object_value:
        known = [fact.object_value]
    if known:
        return any(normalise_name(k) == new for k in known)
    return f" {new} " in _words(fact.text)


def find_contradictions(
    relations: Sequence[ExtractedRelation],
    psyche: Sequence[ExtractedPsyche],
    context: Sequence[Memory],
    subject: Subject,
) -> list[str]:
    entities = {m.id: m for m in context if isinstance(m, Entity)}
    facts = [m for m in context if isinstance(m, Fact) and m.is_valid]
    out: list[str] = []
    for rel in relations:
        slot = SINGLE_VALUED.get(rel.predicate)
        if slot is None:
            continue
        for fact in facts:
            if SINGLE_VALUED.get(fact.predicate) != slot or fact.id in out:
                continue
            if _same_subject(rel, fact, entities, subject) and not _same_object(
                rel, fact, entities
            ):
                out.append(fact.id)
    old_psyche = [m for m in context if isinstance(m, Psyche) and m.is_valid and m.key]
    for p in psyche:
        for old in old_psyche:
            if old.id not in out and _reverses(p.key, old.key):
                out.append(old.id)
    return out


def _reverses(new: str, old: str) -> bool:
    if new == old or ":" not in new or ":" not in old:
        return False
    new_slot, new_obj = new.split(":", 1)
    old_slot, old_obj = old.split(":", 1)
    if {new_slot, old_slot} == {"likes", "dislikes"}:
        return new_obj == old_obj
    if new_slot == old_slot == "trait":
        return new_obj.removeprefix("not ") == old_obj.removeprefix("not ")
    return new_slot == old_slot and new_slot.startswith(_SINGLE_PSYCHE_PREFIXES)
