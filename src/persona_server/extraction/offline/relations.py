"""Subject-verb-object facts by pattern: "I moved to Lisbon" -> (speaker, moved_to, Lisbon).

Subjects come first: "I"/"we" (the speaker), a person's name, or "and" (sharing the subject of
the verb before it, "Anna lives in Porto and works at Google"). A verb rule must follow the
subject, past auxiliaries and adverbs ("have", "just"). Anything else as subject (a pronoun,
"my sister") makes no fact, because a wrong subject is worse than none; negations ("I don't
live in...") and questions never make facts. Objects are entity mentions, or for some
predicates a short literal noun phrase ("works at a bakery"). Family and social roles ("my
sister Anna", "Anna is my sister") and a few attributes (relationship status, age, number of
children) have their own patterns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from persona_server.domain.models import EntityKind
from persona_server.extraction.offline.dates import DateHit
from persona_server.extraction.offline.entities import Mention
from persona_server.extraction.offline.lexicon import PET_ROLES, ROLES
from persona_server.extraction.offline.subject import Subject
from persona_server.extraction.offline.text import (
    Sentences,
    guarded,
    in_quotes,
    is_question,
    word_set,
)
from persona_server.ports.extractor import ExtractedRelation

_I = re.IGNORECASE
_PLACE, _ORG, _PERSON = EntityKind.PLACE, EntityKind.ORGANIZATION, EntityKind.PERSON


@dataclass(frozen=True, slots=True)
class _Rule:
    pattern: str
    predicate: str
    obj: str  # "entity": a mention; "either": a mention or a literal noun phrase
    kind: EntityKind  # what the object is; an OTHER mention is retyped to it


_RULES = (
    _Rule(r"(?:moved|relocated)(?:\s+back)?\s+to", "moved_to", "either", _PLACE),
    _Rule(
        r"(?:live|lives|living|reside|resides|residing)\s+in|(?:am|is|are)\s+(?:based|settled)"
        r"\s+in|settled\s+(?:down\s+)?in",
        "lives_in",
        "either",
        _PLACE,
    ),
    _Rule(r"(?:lived|used\s+to\s+live)\s+in", "lived_in", "either", _PLACE),
    _Rule(
        r"(?:work|works|working|am\s+employed|is\s+employed)\s+(?:at|for)|"
        r"(?:started|began|start|starting)\s+(?:a\s+new\s+job\s+|working\s+)(?:at|for)",
        "works_at",
        "either",
        _ORG,
    ),
    _Rule(r"(?:worked|used\s+to\s+work)\s+(?:at|for)", "worked_at", "either", _ORG),
    _Rule(
        r"(?:got|landed|accepted|took|started|began|have|am\s+starting)\s+(?:a|an|the|my)\s+"
        r"(?:new\s+|dream\s+|first\s+|full-time\s+|part-time\s+|summer\s+)?"
        r"(?:job|position|role|internship|gig)\s+(?:at|with)",
        "works_at",
        "entity",
        _ORG,
    ),
    _Rule(r"(?:work|works|working|worked)\s+as", "works_as", "value", EntityKind.OTHER),
    _Rule(r"joined", "member_of", "entity", _ORG),
    _Rule(
        r"(?:am|is|are|come|comes)\s+(?:originally\s+)?from|came\s+(?:here\s+)?from",
        "from",
        "entity",
        _PLACE,
    ),
    _Rule(r"(?:grew|grow)\s+up\s+in", "grew_up_in", "entity", _PLACE),
    _Rule(r"(?:was|were)\s+born\s+in", "born_in", "entity", _PLACE),
    _Rule(r"met(?:\s+up\s+with)?", "met", "entity", _PERSON),
    _Rule(
        r"visited|(?:went|been|traveled|travelled|flew|drove|headed|returned|"
        r"took\s+a\s+trip|went\s+on\s+a\s+trip)\s+(?:back\s+)?to|(?:got|came)\s+back\s+from",
        "visited",
        "entity",
        _PLACE,
    ),
    _Rule(
        r"(?:am|are|is)\s+(?:going|heading|flying|traveling|travelling|driving)\s+to|"
        r"will\s+(?:visit|go\s+to|travel\s+to|fly\s+to)|(?:plan|want|hope|am\s+planning|"
        r"am\s+hoping)\s+to\s+(?:visit|go\s+to|travel\s+to)",
        "plans_to_visit",
        "entity",
        _PLACE,
    ),
    _Rule(
        r"(?:am|are|is)\s+moving\s+to|will\s+move\s+to|(?:plan|want|hope|am\s+planning)\s+to"
        r"\s+move\s+to",
        "plans_to_move_to",
        "entity",
        _PLACE,
    ),
    _Rule(
        r"(?:study|studies|studying)\s+at|go\s+to\s+school\s+at|am\s+(?:a\s+)?student\s+at|"
        r"am\s+enrolled\s+(?:at|in)",
        "studies_at",
        "entity",
        _ORG,
    ),
    _Rule(r"(?:studied|graduated)\s+(?:at|from)", "studied_at", "entity", _ORG),
    _Rule(
        r"(?:am|is|got)\s+(?:now\s+|recently\s+|happily\s+|just\s+)?married\s+to|married",
        "married_to",
        "entity",
        _PERSON,
    ),
    _Rule(
        r"(?:am|is)\s+(?:dating|seeing)|started\s+dating|(?:am|is)\s+in\s+a\s+relationship\s+"
        r"with",
        "dating",
        "entity",
        _PERSON,
    ),
    _Rule(r"(?:am|is|got|just\s+got)\s+engaged\s+to", "engaged_to", "entity", _PERSON),
)

# One pass over the text for all verb rules: each rule is a named group, `lastgroup` says which.
_VERBS = re.compile(
    r"\b(?:" + "|".join(f"(?P<r{i}>{r.pattern})" for i, r in enumerate(_RULES)) + r")\b", _I
)
_RULE_BY_GROUP = {f"r{i}": r for i, r in enumerate(_RULES)}

_PHRASES = {
    "moved_to": "moved to", "lives_in": "lives in", "lived_in": "lived in",
    "works_at": "works at", "worked_at": "worked at", "works_as": "works as",
    "member_of": "joined", "from": "is from", "grew_up_in": "grew up in",
    "born_in": "was born in", "met": "met", "visited": "visited",
    "plans_to_visit": "plans to visit", "plans_to_move_to": "plans to move to",
    "studies_at": "studies at", "studied_at": "studied at", "married_to": "is married to",
    "dating": "is dating", "engaged_to": "is engaged to",
}  # fmt: skip

# What may stand between a subject and its verb: auxiliaries and time adverbs, no negation
# ("I don't live in..." has "don't" there, so it never reaches a verb rule).
_AUX_WORD = re.compile(
    r"\s+(?:am|is|are|was|were|have|has|had|been|just|recently|finally|also|actually|now|"
    r"still|currently|already|eventually|originally|first|really|then|officially|even|both|"
    r"all|once|happily|newly|initially|temporarily|permanently|since|used\s+to|got\s+to|too)"
    r"(?=\s)"
)
_GAP = re.compile(r"\s+")
_IF_BEFORE = re.compile(
    r"\b(?:if|unless|whether|wish|imagine|suppose|pretend)\s+(?:\w+\s+){0,1}\w+$", _I
)
# Where a subject ends: "I", "we", or "and" (the subject is shared with the previous verb).
_ANCHOR = re.compile(r"(?<![\w'])(?:I|[Ww]e)(?![\w'])|\band(?=\s)")
_AND_TAIL = re.compile(r"\band\s+(?:(?:also|then|now|recently|just|currently|still)\s+)*$")
_FIRST_PERSON = re.compile(r"(?<![\w'])(?:I|[Ww]e)(?![\w'])")
_PREV_WORD = re.compile(r"([A-Za-z']+)[^A-Za-z']*$")
_SUBJECT_LEADS = frozenset({"and", "but", "so", "then", "also", *ROLES})
_OBJ_START = re.compile(r"\s*(?:the\s+)?", _I)
_SPACE = re.compile(r"\s*")
_NP = re.compile(
    r"(?P<np>(?:a|an|the|my|our)\s+(?:[a-z][a-z'-]*\s+){0,3}?[a-z][a-z'-]*)"
    r"(?=\s*(?:[.,;:!?)]|$)|\s+(?:and|but|with|for|since|because|so|as|when|where|in|on|at|"
    r"near|now|right|these|lol|downtown|nearby|here|there|called|named)\b)",
    _I,
)
_VALUE_BLOCK = word_set(
    """
    moment past present future bubble fear hope peace denial harmony dream head world
    same way time fact end middle hand
    """
)

_ADJ = (
    r"(?:(?:older|younger|little|big|baby|twin|step|half|old|dear|good|close|new|lovely|"
    r"amazing|sweet|oldest|youngest|eldest|childhood|college|school|work|other|wonderful|"
    r"beautiful|adorable|furry)\s+)*"
)
_ROLE_ALT = "|".join(re.escape(r) for r in sorted(ROLES, key=len, reverse=True))
_MY_ROLE = re.compile(
    rf"\bmy\s+{_ADJ}(?P<role>{_ROLE_ALT})s?(?:'s\s+name\s+is|,)?\s+(?:named\s+|called\s+)?", _I
)
_IS_MY_ROLE = re.compile(
    rf"\s+(?:is|was|has\s+been)\s+(?:also\s+)?my\s+{_ADJ}(?P<role>{_ROLE_ALT})\b", _I
)
_COMMA_MY_ROLE = re.compile(rf",\s+my\s+{_ADJ}(?P<role>{_ROLE_ALT})\b", _I)
_NAMED_ROLE = re.compile(
    rf"\b(?:I|[Ww]e)\s+(?:have|had|got|adopted|found|rescued|bought|welcomed)\s+"
    rf"(?:a|an|one|two|three|\w+)?\s*{_ADJ}(?P<role>{_ROLE_ALT})s?\s+"
    r"(?:named|called)\s+",
    _I,
)
_POSS_ROLE = re.compile(rf"'s?\s+{_ADJ}(?P<role>{_ROLE_ALT})(?:,)?\s+(?:named\s+|called\s+)?", _I)

_STATUS = re.compile(
    r"\bI\s+(?:am|got|just\s+got|recently\s+got|finally\s+got)\s+(?:now\s+|currently\s+|"
    r"happily\s+|still\s+|recently\s+|newly\s+|just\s+|finally\s+|officially\s+)?"
    r"(?P<status>single|married|divorced|engaged|widowed|separated|in\s+a\s+relationship)"
    r"(?![-\w])",
    _I,
)
_AGE = re.compile(
    r"\bI\s+(?:am|just\s+turned|turned|recently\s+turned)\s+(?P<age>\d{1,3})(?:\s*(?:years?|yrs?)"
    r"(?:\s+old)?\b|(?=\s*(?:[.,!?;]|$)|\s+(?:now|today|this|and|but|so|lol)\b))",
    _I,
)
_CHILDREN = re.compile(
    r"\bI\s+have\s+(?P<n>\d+|one|two|three|four|five|six|seven|eight|nine|ten|no)\s+"
    r"(?:(?:young|little|grown|beautiful|wonderful|amazing|adult|lovely)\s+)?(?:kids|children)\b",
    _I,
)
_STATUS_NEEDLES = (
    "single", "married", "divorced", "engaged", "widowed", "separated", "relationship",
)  # fmt: skip
_DIGITS = tuple("0123456789")
_NUMBERS = {"no": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
            "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10"}  # fmt: skip


class RelationFinder:
    def __init__(
        self,
        text: str,
        sentences: Sentences,
        mentions: Sequence[Mention],
        subject: Subject,
        dates: Sequence[DateHit],
        occurred_at: datetime,
    ) -> None:
        self.text = text
        self.low = text.casefold()
        self.sentences = sentences
        self.subject = subject
        self.dates = dates
        self.occurred_at = occurred_at
        self._by_start = {m.start: m for m in mentions}
        self._by_end = {m.end: m for m in mentions}
        self._out: list[ExtractedRelation] = []
        self._seen: set[tuple[str, str, str]] = set()
        # Kinds that relation cues imply for mentions the entity rules left as OTHER.
        self.kinds: dict[int, EntityKind] = {}

    def run(self) -> list[ExtractedRelation]:
        self._verb_rules()
        self._roles()
        self._attributes()
        return self._out

    # -- helpers ---------------------------------------------------------------------------

    def _blocked(self, pos: int) -> bool:
        s, e = self.sentences.span_of(pos)
        return is_question(self.text[s:e])

    def _hypothetical_or_quoted(self, pos: int) -> bool:
        """ "If I moved to Canada...", 'He said "I moved to Berlin"': not the speaker's facts."""
        s, _ = self.sentences.span_of(pos)
        return in_quotes(self.text, s, pos) or bool(_IF_BEFORE.search(self.text, s, pos))

    def _coordinated_subject(self, pos: int) -> tuple[str, str] | None:
        """ "Anna lives in Porto and works at Google": the verb after "and" shares the subject,
        which is the nearest "I" or person in subject position earlier in the sentence."""
        if _AND_TAIL.search(self.text, max(0, pos - 40), pos) is None:
            return None
        s, _ = self.sentences.span_of(pos)
        best: tuple[int, tuple[str, str]] | None = None
        for m in _FIRST_PERSON.finditer(self.text, s, pos):
            best = (m.start(), (self.subject.name, self.subject.display))
        for mention in self._by_start.values():
            if s <= mention.start < pos and mention.kind == _PERSON and not mention.possessive:
                before = _PREV_WORD.search(self.text, max(s, mention.start - 30), mention.start)
                word = before.group(1).casefold() if before else ""
                if (not word or word in _SUBJECT_LEADS) and (
                    best is None or mention.start > best[0]
                ):
                    best = (mention.start, (mention.name, mention.name))
        return best[1] if best else None

    def _valid_from(self, pos: int) -> datetime | None:
        s, e = self.sentences.span_of(pos)
        horizon = self.occurred_at + timedelta(days=1)
        for h in self.dates:
            if s <= h.start < e and h.date.end <= horizon:
                return h.date.start
        return None

    def _add(
        self,
        subject: str,
        predicate: str,
        obj: str,
        is_entity: bool,
        text: str,
        pos: int,
    ) -> None:
        key = (subject.casefold(), predicate, obj.casefold())
        if key in self._seen or subject.casefold() == obj.casefold():
            return
        self._seen.add(key)
        self._out.append(
            ExtractedRelation(
                subject=subject,
                predicate=predicate,
                object=obj,
                object_is_entity=is_entity,
                text=text,
                valid_from=self._valid_from(pos),
            )
        )

    def _noun_phrase(self, pos: int) -> re.Match[str] | None:
        ws = _SPACE.match(self.text, pos)
        return _NP.match(self.text, ws.end() if ws else pos)

    def _object_mention(self, pos: int, kind: EntityKind) -> Mention | None:
        start = _OBJ_START.match(self.text, pos)
        at = start.end() if start else pos
        mention = self._by_start.get(at)
        if mention is None or mention.possessive:
            return None
        # A person cannot be moved to, and a place cannot be married.
        if mention.kind not in (kind, EntityKind.OTHER) and not (
            kind == _PLACE and mention.kind == _ORG
        ):
            return None
        if mention.kind == EntityKind.OTHER and kind != EntityKind.OTHER:
            self.kinds[mention.start] = kind
        return mention

    # -- rules -----------------------------------------------------------------------------

    def _verb_rules(self) -> None:
        """Try the verb rules only right after a possible subject, not at every position."""
        text = self.text
        me = (self.subject.name, self.subject.display)
        anchors: list[tuple[int, tuple[str, str] | None]] = [
            (m.end(), None if m.group() == "and" else me) for m in _ANCHOR.finditer(text)
        ]
        anchors.extend(
            (m.end, (m.name, m.name))
            for m in self._by_start.values()
            if m.kind in (_PERSON, EntityKind.OTHER) and not m.possessive
        )
        anchors.sort(key=lambda a: a[0])  # facts come out in text order
        done: set[int] = set()
        for pos, subj in anchors:
            verb = self._verb_after(pos)
            if verb is None or verb.start() in done or self._blocked(verb.start()):
                continue
            if self._hypothetical_or_quoted(pos):
                continue
            done.add(verb.start())
            who = subj if subj is not None else self._coordinated_subject(verb.start())
            if who is not None:
                self._verb_rule(_RULE_BY_GROUP[verb.lastgroup or ""], verb, *who)

    def _verb_after(self, pos: int) -> re.Match[str] | None:
        """A verb rule starting after `pos`, past up to four auxiliaries/adverbs."""
        for _ in range(5):
            gap = _GAP.match(self.text, pos)
            if gap is None:
                return None
            verb = _VERBS.match(self.text, gap.end())
            if verb is not None:
                return verb
            aux = _AUX_WORD.match(self.text, pos)
            if aux is None:
                return None
            pos = aux.end()
        return None

    def _verb_rule(self, rule: _Rule, m: re.Match[str], name: str, display: str) -> None:
        phrase = _PHRASES[rule.predicate]
        if rule.obj != "value":
            mention = self._object_mention(m.end(), rule.kind)
            if mention is not None:
                text = f"{display} {phrase} {mention.name}"
                self._add(name, rule.predicate, mention.name, True, text, m.start())
                return
            if rule.obj == "entity":
                return
        np = self._noun_phrase(m.end())
        if np is None:
            return
        value = np["np"]
        words = value.split()
        if rule.obj == "value":
            # "works as a nurse": the value is the role itself.
            if words[0].casefold() in ("a", "an"):
                words = words[1:]
        elif words[-1].casefold() in _VALUE_BLOCK:
            return  # "I live in the moment"
        obj = " ".join(words)
        self._add(name, rule.predicate, obj, False, f"{display} {phrase} {value}", m.start())

    def _role(
        self, person: Mention, role_word: str, owner: str, owner_possessive: str, pos: int
    ) -> None:
        role = ROLES[role_word.casefold()]
        if person.kind not in (_PERSON, EntityKind.OTHER):
            return
        if role not in PET_ROLES:
            self.kinds[person.start] = _PERSON
        self._add(person.name, f"{role}_of", owner, True,
                  f"{person.name} is {owner_possessive} {role.replace('_', ' ')}", pos)  # fmt: skip

    def _roles(self) -> None:
        text, subj, low = self.text, self.subject, self.low
        for m in guarded(_MY_ROLE, text, low, ("my ",)):
            person = self._by_start.get(m.end())
            if person is not None and not self._blocked(m.start()):
                self._role(person, m["role"], subj.name, subj.possessive, m.start())
        for pattern in (_IS_MY_ROLE, _COMMA_MY_ROLE):
            for m in guarded(pattern, text, low, (" my ",)):
                person = self._by_end.get(m.start())
                if person is not None and not self._blocked(m.start()):
                    self._role(person, m["role"], subj.name, subj.possessive, m.start())
        for m in guarded(_NAMED_ROLE, text, low, (" named ", " called ")):
            person = self._by_start.get(m.end())
            if person is not None and not self._blocked(m.start()):
                self._role(person, m["role"], subj.name, subj.possessive, m.start())
        for m in guarded(_POSS_ROLE, text, low, ("'",)):
            owner = self._by_end.get(m.start())
            person = self._by_start.get(m.end())
            if owner is None or person is None or owner.kind != _PERSON:
                continue
            if not self._blocked(m.start()):
                owner_poss = owner.name + ("'" if owner.name.endswith("s") else "'s")
                self._role(person, m["role"], owner.name, owner_poss, m.start())

    def _attributes(self) -> None:
        text, subj, low = self.text, self.subject, self.low
        for m in guarded(_STATUS, text, low, _STATUS_NEEDLES):
            if self._blocked(m.start()):
                continue
            status = " ".join(m["status"].casefold().split())
            self._add(subj.name, "relationship_status", status, False,
                      f"{subj.display} is {status}", m.start())  # fmt: skip
        for m in guarded(_AGE, text, low, _DIGITS):
            age = int(m["age"])
            if 0 < age < 120 and not self._blocked(m.start()):
                self._add(subj.name, "age", str(age), False,
                          f"{subj.display} is {age} years old", m.start())  # fmt: skip
        for m in guarded(_CHILDREN, text, low, ("kids", "children")):
            if self._blocked(m.start()):
                continue
            n = _NUMBERS.get(m["n"].casefold(), m["n"])
            self._add(subj.name, "num_children", n, False,
                      f"{subj.display} has {n} children", m.start())  # fmt: skip


def find_relations(
    text: str,
    sentences: Sentences,
    mentions: Sequence[Mention],
    subject: Subject,
    dates: Sequence[DateHit],
    occurred_at: datetime,
) -> tuple[list[ExtractedRelation], dict[int, EntityKind]]:
    """Relations in `text`, and kind corrections for mentions (by start offset)."""
    finder = RelationFinder(text, sentences, mentions, subject, dates, occurred_at)
    return finder.run(), finder.kinds
