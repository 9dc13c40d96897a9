"""Entity mentions by rules: capitalised runs, titles, suffixes, a gazetteer and nearby cue words.

A capitalised run is a candidate unless it is junk ("I", "Monday", "Thanks") or it merely starts
a sentence: there, capitalisation proves nothing, so the first word must be a known name (first
names, gazetteer, the speaker, entities already in context, or the same word capitalised
elsewhere in the text). The kind comes from the strongest available evidence: a title ("Dr."),
what the user's graph already says, a suffix ("... University"), the gazetteer, then the words
around the name ("with Melanie", "in Lisbon", "at Google", "Melanie said").
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from persona_server.domain.models import Entity, EntityKind
from persona_server.extraction.offline.gazetteer import (
    EVENTS,
    FIRST_NAMES,
    ORGANIZATIONS,
    PLACES,
)
from persona_server.extraction.offline.lexicon import (
    EVENT_SUFFIXES,
    INTERJECTIONS,
    JUNK,
    LEADING_ONLY,
    ORG_BEFORE,
    ORG_SUFFIXES,
    PERSON_AFTER,
    PERSON_BEFORE,
    PERSON_TITLES,
    PLACE_BEFORE,
    PLACE_SUFFIXES,
)
from persona_server.extraction.offline.text import Sentences, word_set
from persona_server.extraction.resolution import normalise_name

_TITLE_TOKEN = r"(?:Dr|Mr|Mrs|Ms|Mx|Prof|St|Rev|Capt|Sgt|Lt|Col|Gen|Gov|Sen|Rep|Mt|Ft)\."
_TOKEN = (
    rf"(?:{_TITLE_TOKEN}|[A-Z][a-z]+(?:[A-Z][a-z]*)*(?:[-'][A-Za-z]+)*|[A-Z]'[A-Z][a-z]+"
    r"|[A-Z]{2,}[a-z]?s?\d*|(?:[A-Z]\.){2,})"
)
_JOIN = r"[ \t]+(?:(?:of(?:[ \t]+the)?|de|da|del|di|du|van|von|der|den|la|le|&)[ \t]+)?"
_RUN = re.compile(rf"(?<![\w'@#/]){_TOKEN}(?:{_JOIN}{_TOKEN})*(?![\w@])")
_WORD = re.compile(r"\S+")
_PREV = re.compile(r"([A-Za-z']+)([^A-Za-z']*)$")
_PREV2 = re.compile(r"([A-Za-z']+)\s+[A-Za-z']+[^A-Za-z']*$")
_NEXT = re.compile(r"[ \t]*([A-Za-z']+)")
_CONTRACTION = re.compile(r"'(?:t|re|ve|ll|d|m)$", re.IGNORECASE)

# Verbs whose "to" takes a person ("talked to Jolene"), not a destination ("moved to Lisbon").
_TO_PERSON = word_set(
    """
    talk talked talking spoke speak speaking said say listen listened wrote write sent send
    married engaged introduced gave give reached mentioned explained showed show belongs
    belong replied reply apologized lent close
    """
)
# Lower-case chat ("moved to lisbon") gets the gazetteer alone; these names are ordinary
# words in lower case ("from china", "to nice", "in turkey sandwiches").
_AMBIGUOUS_LOWER = word_set(
    """
    us la nice turkey china chile jordan georgia victoria virginia reading mobile split bath
    phoenix columbia charlotte savannah congo chad guinea niger java amazon sahara boulder
    queens highlands outback alps rockies caribbean mediterranean sf dc aa mali cuba rio
    vegas napa aspen korea india
    """
)
_LOWER_PLACE = re.compile(
    r"\b(?:in|to|from|visited|visit|visiting|near|around|across)\s+([a-z]+(?:[ -][a-z]+){0,2})"
)


@dataclass(frozen=True, slots=True)
class Mention:
    name: str  # surface form, possessive removed
    kind: EntityKind
    start: int
    end: int  # end of the name itself (before any "'s")
    possessive: bool = False


@dataclass(frozen=True, slots=True)
class KnownNames:
    """Names the user's graph already holds (plus the speaker): their kinds, their first words."""

    kinds: Mapping[str, EntityKind]
    words: frozenset[str]

    @staticmethod
    def build(speaker: str, entities: Iterable[Entity]) -> KnownNames:
        kinds: dict[str, EntityKind] = {}
        for ent in entities:
            for name in (ent.name, *ent.aliases):
                key = normalise_name(name)
                if key:
                    kinds.setdefault(key, ent.kind)
        if speaker:
            kinds[normalise_name(speaker)] = EntityKind.PERSON
        words = frozenset(w for k in kinds for w in k.split(" "))
        return KnownNames(kinds=kinds, words=words)


def _is_junk(word: str) -> bool:
    lw = word.casefold()
    if lw in JUNK or _CONTRACTION.search(lw):
        return True
    if len(word) >= 6 and word.isupper() and lw not in ORGANIZATIONS:
        return True  # shouting ("AMAZING"), not an acronym
    return lw.endswith("'s") and lw[:-2] in JUNK


def _is_initial(text: str, sentences: Sentences, pos: int) -> bool:
    s, _ = sentences.span_of(pos)
    return not any(c.isalnum() for c in text[s:pos])


def _trim(words: list[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Drop connectors and determiners at the edges of a run."""
    while words and (words[0][0].islower() or words[0][0].casefold() in LEADING_ONLY):
        words = words[1:]
    while words and words[-1][0].islower():
        words = words[:-1]
    return words


def _segments(text: str, m: re.Match[str]) -> list[list[tuple[str, int, int]]]:
    """Split a capitalised run at junk words: "Hey Mel" -> ["Mel"], "Thanks Caroline" -> [...]."""
    segs: list[list[tuple[str, int, int]]] = []
    cur: list[tuple[str, int, int]] = []
    for w in _WORD.finditer(text, m.start(), m.end()):
        word = w.group()
        if _is_junk(word):
            if cur:
                segs.append(cur)
            cur = []
            continue
        cur.append((word, w.start(), w.end()))
    if cur:
        segs.append(cur)
    return [t for t in (_trim(s) for s in segs) if t]


class _Scanner:
    def __init__(self, text: str, sentences: Sentences, known: KnownNames) -> None:
        self.text = text
        self.sentences = sentences
        self.known = known

    def known_start(self, words: list[tuple[str, int, int]], elsewhere: set[str]) -> bool:
        """May a run at a sentence start be a name? Only if its first word is known."""
        first = words[0][0].casefold()
        first = first[:-2] if first.endswith("'s") else first
        whole = normalise_name(" ".join(w for w, _, _ in words))
        return (
            first in FIRST_NAMES
            or first in PERSON_TITLES
            or first in self.known.words
            or first in elsewhere
            or whole in PLACES
            or whole in ORGANIZATIONS
            or whole in EVENTS
            or first in PLACES
        )

    def classify(self, words: list[str], start: int, end: int, possessive: bool) -> EntityKind:
        """Strongest evidence first: title, the user's graph, suffix, gazetteer, nearby words."""
        text = self.text
        lw = [w.casefold() for w in words]
        name_n = normalise_name(" ".join(words))
        if lw[0] in PERSON_TITLES and len(words) > 1 and lw[0] not in ("st.", "mt.", "ft."):
            return EntityKind.PERSON
        known = self.known.kinds.get(name_n)
        if known is not None and known != EntityKind.OTHER:
            return known
        multi = len(words) > 1
        if multi and (lw[-1] in ORG_SUFFIXES or lw[0] in ("university", "college", "bank")):
            return EntityKind.ORGANIZATION
        if name_n in EVENTS or (multi and lw[-1] in EVENT_SUFFIXES):
            return EntityKind.EVENT
        if multi and (lw[-1] in PLACE_SUFFIXES or lw[0] in ("mount", "mt.", "lake", "st.")):
            return EntityKind.PLACE

        pm = _PREV.search(text, max(0, start - 30), start)
        prev = pm.group(1).casefold() if pm else ""
        gap = pm.group(2) if pm else ""
        nm = _NEXT.match(text, end + (2 if possessive else 0))
        nxt = nm.group(1).casefold() if nm else ""
        after = text[end : end + 3].lstrip(" \t")
        vocative = (
            ("," in gap or prev in INTERJECTIONS)
            and (not after or after[0] in "!?.,")
            and len(words) <= 2
        )
        if prev == "to":
            p2 = _PREV2.search(text, max(0, start - 40), start)
            person_to = p2 is not None and p2.group(1).casefold() in _TO_PERSON
        else:
            person_to = False
        person_cue = (
            (prev in PERSON_BEFORE and "." not in gap)
            or nxt in PERSON_AFTER
            or vocative
            or person_to
            or (nxt == "and" and text[end : end + 8].casefold().startswith(" and i"))
        )
        if name_n in PLACES:
            return EntityKind.PERSON if person_cue and name_n in FIRST_NAMES else EntityKind.PLACE
        if name_n in ORGANIZATIONS:
            return EntityKind.ORGANIZATION
        if person_cue or (lw[0] in FIRST_NAMES and len(words) <= 3):
            return EntityKind.PERSON
        if possessive:
            return EntityKind.PERSON  # "at Jolene's", "Jolene's kids": mostly people
        if prev in PLACE_BEFORE:
            return EntityKind.PLACE
        if prev in ORG_BEFORE:
            return EntityKind.ORGANIZATION
        return EntityKind.OTHER


def find_mentions(text: str, sentences: Sentences, known: KnownNames) -> list[Mention]:
    """Every entity mention in `text` (already quote-folded), in order of appearance."""
    scanner = _Scanner(text, sentences, known)
    runs = [(m, _is_initial(text, sentences, m.start())) for m in _RUN.finditer(text)]
    # Words capitalised somewhere other than a sentence start vouch for themselves everywhere.
    elsewhere = {
        w.casefold()
        for m, initial in runs
        for w in m.group().split()[(1 if initial else 0) :]
        if not _is_junk(w)
    }
    mentions: list[Mention] = []
    for m, initial in runs:
        if _shouting(text, sentences, m.start()):
            mentions.extend(_shouted_names(scanner, text, m))
            continue
        for seg in _segments(text, m):
            if initial and seg[0][1] == m.start() and not scanner.known_start(seg, elsewhere):
                seg = _trim(seg[1:])
                if not seg:
                    continue
            mention = _mention(scanner, text, seg)
            if mention is not None:
                mentions.append(mention)
    mentions.extend(_lowercase_places(text, mentions))
    mentions.sort(key=lambda x: x.start)
    return mentions


def _shouting(text: str, sentences: Sentences, pos: int) -> bool:
    """An all-capitals sentence of three words or more: capitals say nothing there."""
    s, e = sentences.span_of(pos)
    return text.count(" ", s, e) >= 2 and not any(c.islower() for c in text[s:e])


def _shouted_names(scanner: _Scanner, text: str, m: re.Match[str]) -> list[Mention]:
    """In shouted text only gazetteer and already-known names count, one word at a time."""
    out: list[Mention] = []
    for w in _WORD.finditer(text, m.start(), m.end()):
        key = normalise_name(w.group())
        if key in PLACES or key in ORGANIZATIONS or key in scanner.known.kinds:
            kind = scanner.classify([w.group()], w.start(), w.end(), False)
            out.append(Mention(name=w.group().title(), kind=kind, start=w.start(), end=w.end()))
    return out


def _mention(scanner: _Scanner, text: str, seg: list[tuple[str, int, int]]) -> Mention | None:
    start, end = seg[0][1], seg[-1][2]
    words = [w for w, _, _ in seg]
    possessive = False
    last = words[-1]
    if last.endswith("'s") or last.endswith("'"):
        cut = 2 if last.endswith("'s") else 1
        words[-1] = last[:-cut]
        end -= cut
        possessive = True
    lw = [w.casefold() for w in words]
    if len(words) == 1 and (
        lw[0] in PERSON_TITLES
        or lw[0] in ORG_SUFFIXES
        or lw[0] in PLACE_SUFFIXES
        or lw[0] in EVENT_SUFFIXES
        or len(lw[0]) < 2
    ):
        return None  # a head word alone ("Park", "University", "Dr.") names nothing
    if words[0].casefold() in PERSON_TITLES and len(words) == 1:
        return None
    kind = scanner.classify(words, start, end, possessive)
    return Mention(name=text[start:end], kind=kind, start=start, end=end, possessive=possessive)


def _lowercase_places(text: str, found: list[Mention]) -> list[Mention]:
    taken = {(m.start, m.end) for m in found}
    out: list[Mention] = []
    for m in _LOWER_PLACE.finditer(text):
        words = m.group(1).split()
        for n in range(len(words), 0, -1):
            cand = " ".join(words[:n])
            if cand in PLACES and len(cand) >= 4 and cand not in _AMBIGUOUS_LOWER:
                start = m.start(1)
                end = start + len(cand)
                if (start, end) not in taken:
                    out.append(
                        Mention(name=cand.title(), kind=EntityKind.PLACE, start=start, end=end)
                    )
                break
    return out
