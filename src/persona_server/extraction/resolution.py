"""Entity resolution: map extracted entity names onto the user's existing entities.

Deterministic and conservative: a match needs an equal normalised name or alias, or the
first-name / full-name rule for people ("Melanie" <-> "Melanie Smith") when exactly one existing
person fits. Anything with several candidates is reported as ambiguous so a slower judge (an
LLM, or a human) can settle it later; guessing wrong merges two people, which is worse than
keeping a duplicate. Repeated mentions within one batch always collapse into one group.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from persona_server.domain import names as domain_names
from persona_server.domain.models import Entity, EntityKind
from persona_server.ports.extractor import ExtractedEntity

_NON_WORD = re.compile(r"[^\w\s]+")
# Titles after which a single word is a surname ("Dr. Lee" is Jane Lee, bare "Lee" is not).
# The same formal honorifics `normalise_name` strips.
_SURNAME_TITLES = frozenset(
    {"dr", "mr", "mrs", "ms", "mx", "miss", "prof", "professor", "sir", "dame", "rev", "mme"}
)


@lru_cache(maxsize=8192)  # names repeat across a user's items; this is on the ingest hot path
def normalise_name(name: str) -> str:
    """The one shared name form (`persona_server.domain.names.normalise_name`), memoised.

    Casefold, drop accents, possessive 's, punctuation, honorifics and a leading "the":
    "Dr. Lee's" -> "lee". Stores index names under the same function, so resolution and store
    lookups always agree.
    """
    return domain_names.normalise_name(name)


def has_honorific(name: str) -> bool:
    first = _NON_WORD.sub("", name.strip().split(" ", 1)[0].casefold())
    return first in _SURNAME_TITLES and " " in name.strip()


@dataclass(frozen=True, slots=True)
class EntityMatch:
    """One real-world entity the batch mentions, and where it lands among existing entities."""

    entity: ExtractedEntity  # repeated mentions merged: first full name, every surface form
    existing_id: str | None  # the existing entity it resolves to; None: create it (or ambiguous)
    candidates: tuple[str, ...] = ()  # when ambiguous: every fitting existing id, sorted
    names: tuple[str, ...] = ()  # the extracted names that landed here

    @property
    def is_ambiguous(self) -> bool:
        return self.existing_id is None and len(self.candidates) > 1


@dataclass(frozen=True, slots=True)
class Resolution:
    matches: tuple[EntityMatch, ...]
    _by_name: dict[str, EntityMatch] = field(default_factory=dict, repr=False, compare=False)

    @property
    def matched(self) -> tuple[EntityMatch, ...]:
        return tuple(m for m in self.matches if m.existing_id is not None)

    @property
    def ambiguous(self) -> tuple[EntityMatch, ...]:
        return tuple(m for m in self.matches if m.is_ambiguous)

    @property
    def new(self) -> tuple[EntityMatch, ...]:
        return tuple(m for m in self.matches if m.existing_id is None and not m.is_ambiguous)

    def lookup(self, name: str) -> EntityMatch | None:
        """The match an extracted name (e.g. a relation's subject) belongs to."""
        return self._by_name.get(normalise_name(name))


def _kinds_compatible(a: EntityKind, b: EntityKind) -> bool:
    # OTHER means "the extractor could not tell", so it may meet any kind.
    return a == b or EntityKind.OTHER in (a, b)


@dataclass(slots=True)
class _Group:
    kind: EntityKind
    names: list[str]  # surface forms, first seen first
    keys: set[str]  # normalised forms of every surface form and alias


def _group(extracted: Sequence[ExtractedEntity]) -> list[_Group]:
    """Collapse repeated mentions: equal normalised names/aliases, then unique first names."""
    groups: list[_Group] = []
    by_key: dict[str, _Group] = {}
    for ent in extracted:
        forms = [ent.name, *ent.aliases]
        keys = {k for k in (normalise_name(f) for f in forms) if k}
        if not keys:
            continue
        hit = next(
            (
                by_key[k]
                for k in keys
                if k in by_key and _kinds_compatible(by_key[k].kind, ent.kind)
            ),
            None,
        )
        if hit is None:
            hit = _Group(kind=ent.kind, names=[], keys=set())
            groups.append(hit)
        elif hit.kind == EntityKind.OTHER:
            hit.kind = ent.kind
        for f in forms:
            if f not in hit.names:
                hit.names.append(f)
        hit.keys |= keys
        for k in keys:
            by_key.setdefault(k, hit)

    # "Melanie" and "Melanie Smith" in one batch are one person when the full name is unique.
    people = [g for g in groups if g.kind == EntityKind.PERSON]
    merged: set[int] = set()
    for short in people:
        short_keys = [k for k in short.keys if " " not in k]
        if not short_keys or any(" " in k for k in short.keys):
            continue
        fulls = [
            g
            for g in people
            if g is not short and any(k.split(" ", 1)[0] in short_keys for k in g.keys if " " in k)
        ]
        if len(fulls) == 1 and id(fulls[0]) not in merged:
            full = fulls[0]
            full.names.extend(n for n in short.names if n not in full.names)
            full.keys |= short.keys
            merged.add(id(short))
    return [g for g in groups if id(g) not in merged]


def _primary_name(names: list[str]) -> str:
    # The most informative surface form names the entity: most words, then longest.
    return max(names, key=lambda n: (len(normalise_name(n).split()), len(n)))


@dataclass(slots=True)
class _Index:
    exact: dict[str, list[Entity]] = field(default_factory=dict)
    first_name: dict[str, list[Entity]] = field(default_factory=dict)  # people with 2+ words
    last_name: dict[str, list[Entity]] = field(default_factory=dict)  # people with 2+ words
    single_person: dict[str, list[Entity]] = field(default_factory=dict)  # one-word people


def _index(existing: Iterable[Entity]) -> _Index:
    idx = _Index()
    for ent in existing:
        if not ent.is_valid:
            continue
        keys = {k for k in (normalise_name(n) for n in (ent.name, *ent.aliases)) if k}
        for k in keys:
            idx.exact.setdefault(k, []).append(ent)
            if ent.kind != EntityKind.PERSON:
                continue
            words = k.split(" ")
            if len(words) >= 2:
                idx.first_name.setdefault(words[0], []).append(ent)
                idx.last_name.setdefault(words[-1], []).append(ent)
            else:
                idx.single_person.setdefault(k, []).append(ent)
    return idx


def _unique_ids(entities: Iterable[Entity], kind: EntityKind) -> list[str]:
    return sorted({e.id for e in entities if _kinds_compatible(e.kind, kind)})


def _candidates(group: _Group, idx: _Index) -> list[str]:
    if not idx.exact:
        return []
    exact = _unique_ids((e for k in group.keys for e in idx.exact.get(k, ())), group.kind)
    if exact:
        # Same kind beats a kind-agnostic OTHER when both fit.
        same = sorted(
            {e.id for k in group.keys for e in idx.exact.get(k, ()) if e.kind == group.kind}
        )
        return same if len(same) == 1 else exact
    if group.kind not in (EntityKind.PERSON, EntityKind.OTHER):
        return []
    found: set[str] = set()
    for name in group.names:
        key = normalise_name(name)
        words = key.split(" ")
        if len(words) == 1:
            # "Dr. Lee" names a surname; bare "Melanie" a given name.
            table = idx.last_name if has_honorific(name) else idx.first_name
            found.update(_unique_ids(table.get(key, ()), group.kind))
        elif not has_honorific(name) or len(words) > 1:
            found.update(_unique_ids(idx.single_person.get(words[0], ()), group.kind))
    return sorted(found)


def resolve(extracted: Sequence[ExtractedEntity], existing: Sequence[Entity]) -> Resolution:
    """Group the batch's mentions into entities and map each onto at most one existing entity.

    Deterministic: the same inputs give the same output, whatever the order of `existing`.
    """
    idx = _index(existing)
    matches: list[EntityMatch] = []
    by_name: dict[str, EntityMatch] = {}
    for group in _group(extracted):
        primary = _primary_name(group.names)
        aliases = tuple(n for n in group.names if n != primary)
        entity = ExtractedEntity(name=primary, kind=group.kind, aliases=aliases)
        cands = _candidates(group, idx)
        match = EntityMatch(
            entity=entity,
            existing_id=cands[0] if len(cands) == 1 else None,
            candidates=tuple(cands) if len(cands) > 1 else (),
            names=tuple(group.names),
        )
        matches.append(match)
        for k in group.keys:
            by_name.setdefault(k, match)
    return Resolution(matches=tuple(matches), _by_name=by_name)
