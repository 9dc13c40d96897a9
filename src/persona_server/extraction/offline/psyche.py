"""Traits, values and preferences the speaker states about themselves.

Only first-person statements count ("I love hiking"); what someone says about others is left
to an LLM extractor. Each result carries a merge key, "<slot>:<stemmed object>", so "I love
hiking" and "I really enjoy hikes" reinforce one memory. Slots: likes, dislikes, prefers,
values, trait, allergic, fears, good_at, bad_at, diet, favourite_<category>.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from persona_server.domain.models import PsycheKind
from persona_server.extraction.offline.dates import DateHit, before_date
from persona_server.extraction.offline.gazetteer import FIRST_NAMES, ORGANIZATIONS, PLACES
from persona_server.extraction.offline.lexicon import DIETS, TRAIT_ADJECTIVES, VAGUE_OBJECTS
from persona_server.extraction.offline.subject import Subject
from persona_server.extraction.offline.text import (
    Sentences,
    conjugate,
    content_stems,
    cut_clause,
    guarded,
    is_question,
    make_key,
    relative_clause_before,
    third_person,
    word_set,
)
from persona_server.ports.extractor import ExtractedPsyche

_I = re.IGNORECASE
_ADV = (
    r"(?:(?:really|absolutely|just|truly|totally|also|still|always|do|genuinely|kinda|kind of|"
    r"sort of|so|personally|definitely|seriously|actually|especially|particularly|simply|"
    r"now|honestly|deeply|strongly|even|sometimes|usually)\s+)*"
)

_LIKE = re.compile(
    rf"\bI\s+{_ADV}(?P<verb>love|like|enjoy|adore|prefer|hate|dislike|detest|loathe|"
    r"can't stand|can not stand|cannot stand|can't bear|don't like|do not like|don't enjoy|"
    r"do not enjoy|never liked|never enjoyed|don't care for|am into|am not into|"
    r"am (?:really |so |super |totally |also |very |quite |pretty )*(?:passionate about|"
    r"obsessed with|crazy about|fond of|keen on|interested in|fascinated by|addicted to|"
    r"(?:not )?(?:a )?(?:big |huge |massive )?fan of|allergic to|scared of|afraid of|"
    r"terrified of|good at|great at|bad at|terrible at|not good at)|"
    r"have (?:always |really |also |never )?(?:loved|liked|enjoyed|hated|been into|"
    r"been (?:a )?(?:big |huge )?fan of|been passionate about|been obsessed with))\s+",
    _I,
)
_FAVOURITE = re.compile(
    r"\bmy\s+(?:all[- ]time\s+|absolute\s+|personal\s+|new\s+)?(?:favou?rite|fave|fav)\s+"
    r"(?P<cat>[a-z][a-z' -]{1,40}?)\s+(?:is|are|was|has to be|would be|=)\s+",
    _I,
)
_FAVOURITE_AFTER = re.compile(
    r"\s+(?:is|are)\s+(?:definitely\s+|probably\s+|still\s+|now\s+)?my\s+(?:all[- ]time\s+|"
    r"absolute\s+|new\s+)?(?:favou?rite|fave|fav)(?:\s+(?P<cat>[a-z]+(?:\s+[a-z]+)?))?\b",
    _I,
)
_TRAIT_NOUN = re.compile(
    r"\bI\s+(?:am|have always been|have been)\s+(?P<neg>not\s+)?(?:(?:such|really|quite|very|"
    r"pretty|kind of|kinda|definitely|totally|more of|more|a bit of|always|naturally)\s+)*"
    r"an?\s+(?P<adj>(?:[a-z-]+\s+){0,2}?)(?P<noun>person|introvert|extrovert|ambivert|"
    r"optimist|pessimist|perfectionist|homebody|workaholic|bookworm|foodie|night owl|"
    r"early riser|morning person|people person|dog person|cat person|animal lover|"
    r"nature lover|book lover|dog lover|cat lover|people pleaser|people-pleaser|overthinker|"
    r"planner|risk-taker|risk taker|go-getter|introverted person|extroverted person)\b",
    _I,
)
_TRAIT_ADJ = re.compile(
    r"\bI\s+(?:am|have always been|have been|tend to be|consider myself)\s+(?P<neg>not\s+)?"
    r"(?:(?:very|really|so|pretty|quite|super|fairly|kind of|kinda|a bit|a little|extremely|"
    r"naturally|generally|always|definitely|incredibly|such an?|an?|more)\s+)*"
    r"(?P<adj>[a-z-]+(?:\s+[a-z-]+)?)",
    _I,
)
_VALUE = re.compile(
    rf"\bI\s+{_ADV}(?P<verb>value|believe in|care (?:a lot |deeply |so much )?about|cherish|"
    r"prioritize|prioritise|stand for|live by)\s+",
    _I,
)
_VALUE_AFTER = re.compile(
    r"\s+(?:is|are|means|mean|matters|matter)\s+(?:really\s+|very\s+|so\s+|super\s+|"
    r"extremely\s+|incredibly\s+|truly\s+)?(?:important|everything|the world|a lot|so much)"
    r"\s+to\s+me\b",
    _I,
)
_DIET = re.compile(
    r"\bI\s+am\s+(?:(?:a|an|now|also|strictly|mostly|fully|completely|still|fully)\s+)*"
    r"(?P<diet>vegetarian|vegan|pescatarian|pescetarian|gluten-free|keto|kosher|halal)\b",
    _I,
)
_CLAUSE_START = re.compile(r"(?:^|[.,;:!?]\s*|\b(?:and|but|because|so|that)\s+)(?=[^.,;:!?]*$)", _I)

_SLOTS: dict[str, tuple[PsycheKind, str]] = {
    "passionate about": (PsycheKind.PREFERENCE, "likes"),
    "obsessed with": (PsycheKind.PREFERENCE, "likes"),
    "crazy about": (PsycheKind.PREFERENCE, "likes"),
    "fond of": (PsycheKind.PREFERENCE, "likes"),
    "keen on": (PsycheKind.PREFERENCE, "likes"),
    "interested in": (PsycheKind.PREFERENCE, "likes"),
    "fascinated by": (PsycheKind.PREFERENCE, "likes"),
    "addicted to": (PsycheKind.PREFERENCE, "likes"),
    "allergic to": (PsycheKind.TRAIT, "allergic"),
    "scared of": (PsycheKind.TRAIT, "fears"),
    "afraid of": (PsycheKind.TRAIT, "fears"),
    "terrified of": (PsycheKind.TRAIT, "fears"),
    "good at": (PsycheKind.TRAIT, "good_at"),
    "great at": (PsycheKind.TRAIT, "good_at"),
    "bad at": (PsycheKind.TRAIT, "bad_at"),
    "terrible at": (PsycheKind.TRAIT, "bad_at"),
}
_NEGATIVE = ("hate", "dislike", "detest", "loathe", "stand", "bear", "don't", "do not", "never",
             "not into", "not a", "not big", "not huge", "care for")  # fmt: skip


def _slot(verb: str) -> tuple[PsycheKind, str]:
    v = " ".join(verb.casefold().split())
    if v.startswith("am "):
        tail = v.removeprefix("am ")
        for phrase, slot in _SLOTS.items():
            if phrase in tail:
                if phrase == "good at" and "not good" in tail:
                    return PsycheKind.TRAIT, "bad_at"
                return slot
        if "fan of" in tail or tail == "into":
            return PsycheKind.PREFERENCE, "dislikes" if "not" in tail else "likes"
        if tail == "not into":
            return PsycheKind.PREFERENCE, "dislikes"
    if "prefer" in v:
        return PsycheKind.PREFERENCE, "prefers"
    if any(n in v for n in _NEGATIVE):
        return PsycheKind.PREFERENCE, "dislikes"
    return PsycheKind.PREFERENCE, "likes"


def _object(text: str, start: int, slot: str, offset: int, dates: Sequence[DateHit]) -> str:
    obj, _ = cut_clause(text, start, max_words=8)
    obj = before_date(obj, offset + start, dates)
    if slot == "prefers":
        obj = re.split(r"\s+(?:over|rather than|instead of|than|to)\s+", obj, maxsplit=1)[0]
    if obj.casefold().startswith("to "):
        obj = obj[3:]  # "I love to paint" -> "paint"
    return obj.strip(" '\"")


# "I love the idea", "I love the colors": the thing is only known from the conversation.
_VAGUE_THE = word_set(
    """
    idea thought way fact look looks sound sounds vibe vibes feeling color colors colour
    colours energy picture photo pic pics design details detail concept name message quote
    atmosphere view views texture result results support advice
    """
)


def _vague(obj: str) -> bool:
    words = obj.casefold().split()
    if not words or not words[0][0].isalnum():
        return True
    if words[0] in VAGUE_OBJECTS or " ".join(words[:2]) in VAGUE_OBJECTS:
        return True
    return len(words) <= 2 and words[0] == "the" and words[-1] in _VAGUE_THE


# Circumstances ("hiking in the mountains", "reading at night") stay in the text, not the key,
# so a later "I love hiking" reinforces the same preference.
_KEY_CUT = re.compile(
    r"\s+(?:(?:in|at|with|during|near|around|after|before|from|on)\s+(?:the|a|an|my|our|their|"
    r"his|her|your|this|that|these|those)\b|(?:when|whenever|every|on weekends)\s)",
    _I,
)
_NEXT_WORD = re.compile(r"[a-z']+", _I)
_ADJ_COMPLEMENT = word_set("about to of with for at in on by that")


def _key(slot: str, obj: str) -> str:
    return make_key(slot, _KEY_CUT.split(obj, maxsplit=1)[0], 4)


_PROPER = FIRST_NAMES | PLACES | ORGANIZATIONS


def _uncap(phrase: str) -> str:
    """ "Family is important to me" -> "family": undo sentence-start capitals, keep names."""
    first = phrase.split(" ", 1)[0]
    low = first.casefold()
    if first[:1].isupper() and first[1:].islower() and low not in _PROPER:
        return low + phrase[len(first) :]
    return phrase


def find_psyche(
    text: str, sentences: Sentences, subject: Subject, dates: Sequence[DateHit] = ()
) -> list[ExtractedPsyche]:
    out: list[ExtractedPsyche] = []
    seen: set[str] = set()

    def add(kind: PsycheKind, key: str, phrase: str, *, possessive: bool = False) -> None:
        if key and key not in seen:
            seen.add(key)
            who = subject.possessive_start if possessive else subject.display
            out.append(ExtractedPsyche(kind=kind, text=f"{who} {phrase}", key=key))

    for s, e in sentences.spans:
        sent = text[s:e]
        if is_question(sent) or not _has_cue(sent):
            continue
        low = sent.casefold()
        for m in _LIKE.finditer(sent):
            if relative_clause_before(sent, m.start()):
                continue
            kind, slot = _slot(m["verb"])
            obj = _object(sent, m.end(), slot, s, dates)
            if _vague(obj):
                continue
            verb_text = conjugate(sent[m.start() + 1 : m.end()].strip())
            add(kind, _key(slot, obj), f"{verb_text} {third_person(obj)}")
        for m in guarded(_FAVOURITE, sent, low, ("fav",)):
            obj = _object(sent, m.end(), "favourite", s, dates)
            cat = m["cat"].strip()
            if _vague(obj):
                continue
            cat_key = "_".join(content_stems(cat)) or "thing"
            add(
                PsycheKind.PREFERENCE,
                make_key(f"favourite_{cat_key}", obj, 4),
                f"favourite {cat} is {third_person(obj)}",
                possessive=True,
            )
        for m in guarded(_FAVOURITE_AFTER, sent, low, ("fav",)):
            before = _uncap(_clause_before(sent, m.start()))
            if _vague(before):
                continue
            cat = (m["cat"] or "").strip()
            if cat and cat.casefold().split()[0] in ("and", "but", "because", "so", "too", "one"):
                cat = ""
            if cat:
                cat_key = "_".join(content_stems(cat))
                add(
                    PsycheKind.PREFERENCE,
                    make_key(f"favourite_{cat_key}", before, 4),
                    f"favourite {cat} is {third_person(before)}",
                    possessive=True,
                )
            else:
                add(PsycheKind.PREFERENCE, _key("likes", before),
                    f"loves {third_person(before)}")  # fmt: skip
        for m in guarded(_TRAIT_NOUN, sent, low, _BE_NEEDLES):
            adj = m["adj"].strip()
            noun = m["noun"]
            neg = "not " if m["neg"] else ""
            core = adj if noun.casefold() == "person" and adj else f"{adj} {noun}".strip()
            if not core or _vague(core):
                continue
            article = "an" if (adj or noun)[0].casefold() in "aeiou" else "a"
            add(PsycheKind.TRAIT, make_key("trait", neg + core, 4),
                f"is {neg}{article} {f'{adj} ' if adj else ''}{noun}")  # fmt: skip
        for m in guarded(_TRAIT_ADJ, sent, low, _BE_NEEDLES):
            adj = m["adj"].casefold()
            if adj not in TRAIT_ADJECTIVES:
                adj = adj.split()[0]
                if adj not in TRAIT_ADJECTIVES:
                    continue
                follow = m["adj"].casefold().split()[1:]
            else:
                follow = _NEXT_WORD.findall(sent, m.end(), m.end() + 12)[:1]
            if follow and follow[0] in _ADJ_COMPLEMENT:
                continue  # "passionate about X", "determined to X": about X, not a trait
            neg = "not " if m["neg"] else ""
            add(PsycheKind.TRAIT, make_key("trait", neg + adj, 4), f"is {neg}{adj}")
        for m in guarded(_VALUE, sent, low, _VALUE_NEEDLES):
            obj = _object(sent, m.end(), "values", s, dates)
            if _vague(obj):
                continue
            verb_text = conjugate(sent[m.start() + 1 : m.end()].strip())
            add(PsycheKind.VALUE, _key("values", obj), f"{verb_text} {third_person(obj)}")
        for m in guarded(_VALUE_AFTER, sent, low, ("to me",)):
            before = _uncap(_clause_before(sent, m.start()))
            if _vague(before):
                continue
            add(PsycheKind.VALUE, _key("values", before),
                f"values {third_person(before)}")  # fmt: skip
        for m in guarded(_DIET, sent, low, _DIET_NEEDLES):
            diet = m["diet"].casefold()
            if diet in DIETS:
                add(PsycheKind.PREFERENCE, f"diet:{diet}", f"is {diet}")
    return out


_BE_NEEDLES = ("i am", "i have", "i tend", "i consider")
_VALUE_NEEDLES = ("value", "believe", "care", "cherish", "priorit", "stand for", "live by")
_DIET_NEEDLES = (
    "vegetarian",
    "vegan",
    "pescatarian",
    "pescetarian",
    "gluten",
    "keto",
    "kosher",
    "halal",
)
_CUE = re.compile(r"\bI\b|\bmy\b|\bto me\b", _I)


def _has_cue(sent: str) -> bool:
    return _CUE.search(sent) is not None


def _clause_before(sent: str, end: int) -> str:
    """The subject phrase right before `end`: "Honestly, pizza" -> "pizza" (max 5 words)."""
    head = sent[:end]
    m = _CLAUSE_START.search(head)
    phrase = head[m.end() :] if m else head
    words = phrase.split()[-5:]
    return " ".join(words).strip(" '\"")
