"""Goals: intentions the speaker states, and their achievement or abandonment.

An intention ("I want to run a marathon") is ACTIVE, keyed by its stemmed verb phrase
("goal:run marathon"). A later "I finally ran a marathon" is ACHIEVED and, when it matches an
active goal in the context, reuses that goal's key so the store updates it. Achievement and
abandonment verbs that are common in small talk ("I finally got some sleep", "I quit") only
count when they match a known intention; explicit ones ("I completed", "I gave up on") count
on their own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from persona_server.domain.models import Goal, GoalStatus
from persona_server.extraction.offline.dates import DateHit, before_date
from persona_server.extraction.offline.lexicon import (
    TRIVIAL_INTENTIONS,
    TRIVIAL_PLANS,
    VAGUE_OBJECTS,
)
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
from persona_server.ports.extractor import ExtractedGoal

_I = re.IGNORECASE
_ADV = (
    r"(?:(?:really|also|still|just|definitely|eventually|someday|one day|seriously|totally|"
    r"actually|now|soon|kind of|kinda|sort of|always|even|desperately|badly|finally|"
    r"officially|hopefully|probably)\s+)*"
)
_ACTIVE = re.compile(
    rf"\bI\s+{_ADV}(?P<verb>want to|would (?:really )?(?:like|love) to|plan to|hope to|"
    r"intend to|aim to|will|am (?:going|planning|hoping|aiming|trying|looking|determined|"
    r"about|ready|preparing|working|learning how|saving up|saving|training|studying|"
    r"excited|dying|eager|itching) (?:to|on|for|towards|toward)|am (?:thinking|dreaming) "
    r"(?:about|of)|am considering|have decided to|decided to|dream of|dream about|"
    r"can't wait to|can not wait to|cannot wait to|have always wanted to|always wanted to|"
    r"have been wanting to|have been meaning to|have been thinking about|have been planning "
    r"to|am learning|am working on)\s+",
    _I,
)
_MY_GOAL = re.compile(
    r"\bmy\s+(?:(?:big|main|biggest|new|next|ultimate|long-term|current|only|first)\s+)?"
    r"(?P<noun>goal|plan|dream|resolution|aim|hope|intention|mission|wish)\s+"
    r"(?:for [\w\s]{1,20}? )?(?:is|was|has always been|for this year is)\s+(?:to\s+)?",
    _I,
)
# Chat drops the subject: "Gonna continue my studies" (expanded to "Going to continue...").
_SUBJECTLESS_VERB = {
    "going to": "is going to", "planning to": "is planning to", "planning on": "is planning on",
    "hoping to": "is hoping to", "want to": "wants to", "trying to": "is trying to",
    "thinking about": "is thinking about", "thinking of": "is thinking of",
    "aiming to": "is aiming to", "need to": "needs to", "looking to": "is looking to",
}  # fmt: skip
_SUBJECTLESS = re.compile(
    r"^(?P<verb>going to|planning to|planning on|hoping to|want to|trying to|thinking about|"
    r"thinking of|aiming to|need to|looking to)\s+",
    _I,
)
_DONE = re.compile(
    rf"\bI\s+{_ADV.replace('finally|', '')}(?P<verb>finally|finished|achieved|completed|"
    r"accomplished|reached|managed to|succeeded in|got my|got into|passed|graduated from|"
    r"graduated|have finished|have completed|have achieved|have reached|have accomplished)\s+",
    _I,
)
_DROPPED = re.compile(
    rf"\bI\s+{_ADV}(?P<verb>gave up on|gave up|have given up on|have given up|abandoned|"
    r"am giving up on|am giving up|quit|stopped|dropped|am quitting|am done with|"
    r"decided not to|have decided not to|do not want to|don't want to|no longer want to|"
    r"am not going to|won't|will not|am no longer)\s+",
    _I,
)
_DROPPED_NEEDLES = (
    "gave up", "given up", "giving up", "abandon", "quit", "stopped", "dropped", "done with",
    "not to", "want to", "no longer", "not going", "won't", "will not",
)  # fmt: skip
_DONE_NEEDLES = (
    "finally", "finish", "achiev", "complet", "accomplish", "reach", "managed", "succeeded",
    "got my", "got into", "passed", "graduat",
)  # fmt: skip
# Verbs that are achievements or abandonments on their own, without a matching intention.
_EXPLICIT_DONE = frozenset(
    {"finished", "achieved", "completed", "accomplished", "have finished", "have completed",
     "have achieved", "have accomplished", "graduated", "graduated from"}
)  # fmt: skip
_EXPLICIT_DROPPED = frozenset(
    {"gave up on", "have given up on", "abandoned", "am giving up on", "gave up", "have given up"}
)
# Verbs that carry no content when comparing an outcome with an intention.
_GENERIC = frozenset(
    content_stems(
        "finish finished complete completed achieve achieved accomplish accomplished get got do "
        "did make made start started begin began reach reached manage managed final finally "
        "actually try tried go went want really start keep"
    )
)
_QUITTING = frozenset(content_stems("quit stop give smoking drinking"))


@dataclass(frozen=True, slots=True)
class _Known:
    key: str
    stems: frozenset[str]
    quitting: bool  # "quit smoking": the "abandon" verbs achieve it


def _known_goals(context: Sequence[Goal]) -> list[_Known]:
    out: list[_Known] = []
    for g in context:
        if g.status != GoalStatus.ACTIVE or not g.is_valid:
            continue
        src = g.key.split(":", 1)[1] if ":" in g.key else g.text
        stems = content_stems(src)
        if not g.key:
            continue
        core = frozenset(stems) - _GENERIC
        out.append(_Known(key=g.key, stems=core, quitting=bool(stems) and stems[0] in _QUITTING))
    return out


def _match(obj: str, known: Sequence[_Known]) -> _Known | None:
    """The intention an outcome refers to: most shared content words, at least half of either."""
    stems = frozenset(content_stems(obj)) - _GENERIC
    best: tuple[float, str, _Known] | None = None
    for k in known:
        shared = len(stems & k.stems)
        if not shared:
            continue
        score = shared / min(len(stems), len(k.stems))
        if score >= 0.5 and (best is None or (score, k.key) > best[:2]):
            best = (score, k.key, k)
    return best[2] if best else None


def _usable(obj: str, verb: str) -> bool:
    words = obj.casefold().split()
    if not words or not words[0][0].isalnum():
        return False
    if words[0] in VAGUE_OBJECTS or words[0] in ("not", "never", "no", "be"):
        return False  # "gonna be awesome": the subject is "it", not the speaker
    if verb.casefold() == "will" and (words[0] in TRIVIAL_INTENTIONS or len(words) < 2):
        return False
    if " ".join(words).startswith(TRIVIAL_PLANS):
        return False
    # "try it", "make it work", "check them out": about something only the conversation knows.
    return not (len(words) <= 3 and any(w in _PRONOUNS for w in words))


_PRONOUNS = word_set("it that this them those these there")
_LEADING_ADVERBS = re.compile(
    r"^(?:(?:always|definitely|really|just|also|still|totally|probably|hopefully|soon|"
    r"eventually|someday|finally|actually|seriously)\s+)+",
    re.IGNORECASE,
)


def _goal_object(sent: str, start: int, offset: int, dates: Sequence[DateHit]) -> tuple[str, str]:
    """(object as written, object without its date) for the clause at `start` in `sent`."""
    obj, _ = cut_clause(sent, start)
    undated = before_date(obj, offset + start, dates)
    return _LEADING_ADVERBS.sub("", obj), _LEADING_ADVERBS.sub("", undated)


def _due(hits: Sequence[DateHit], start: int, end: int, occurred_at: datetime) -> datetime | None:
    for h in hits:
        if start <= h.start < end and h.date.end > occurred_at:
            return h.date.start
    return None


def find_goals(
    text: str,
    sentences: Sentences,
    subject: Subject,
    dates: Sequence[DateHit],
    occurred_at: datetime,
    context_goals: Sequence[Goal] = (),
) -> list[ExtractedGoal]:
    known = _known_goals(context_goals)
    out: list[ExtractedGoal] = []
    seen: set[str] = set()

    def add(goal: ExtractedGoal) -> None:
        if goal.key and goal.key not in seen:
            seen.add(goal.key)
            out.append(goal)

    for s, e in sentences.spans:
        sent = text[s:e]
        if is_question(sent):
            continue
        low = sent.casefold()
        for m in guarded(_DROPPED, sent, low, _DROPPED_NEEDLES):
            obj, undated = _goal_object(sent, m.end(), s, dates)
            verb = " ".join(m["verb"].casefold().split())
            if not _usable(obj, verb):
                continue
            hit = _match(undated, known)
            if hit is not None:
                # "I quit smoking" against "I want to quit smoking" is a success.
                status = GoalStatus.ACHIEVED if hit.quitting else GoalStatus.ABANDONED
                add(ExtractedGoal(text=_text(subject, m, sent, obj), status=status, key=hit.key))
            elif verb in _EXPLICIT_DROPPED:
                add(
                    ExtractedGoal(
                        text=_text(subject, m, sent, obj),
                        status=GoalStatus.ABANDONED,
                        key=make_key("goal", undated),
                    )
                )
        for m in guarded(_DONE, sent, low, _DONE_NEEDLES):
            obj, undated = _goal_object(sent, m.end(), s, dates)
            verb = " ".join(m["verb"].casefold().split())
            if not _usable(obj, verb):
                continue
            hit = _match(f"get {undated}" if verb in ("got my", "got into") else undated, known)
            if hit is not None or verb in _EXPLICIT_DONE:
                key = hit.key if hit else make_key("goal", f"{verb} {undated}")
                add(ExtractedGoal(text=_text(subject, m, sent, obj), status=GoalStatus.ACHIEVED,
                                  key=key))  # fmt: skip
        for m in guarded(_ACTIVE, sent, low, ("i ",)):
            obj, undated = _goal_object(sent, m.end(), s, dates)
            if not _usable(obj, m["verb"]) or relative_clause_before(sent, m.start()):
                continue
            add(
                ExtractedGoal(
                    text=_text(subject, m, sent, obj),
                    status=GoalStatus.ACTIVE,
                    key=make_key("goal", undated),
                    due_at=_due(dates, s, e, occurred_at),
                )
            )
        for m in guarded(_MY_GOAL, sent, low, ("my ",)):
            obj, undated = _goal_object(sent, m.end(), s, dates)
            if not _usable(obj, "goal"):
                continue
            noun = m["noun"].casefold()
            add(
                ExtractedGoal(
                    text=f"{subject.possessive_start} {noun} is to {third_person(obj)}",
                    status=GoalStatus.ACTIVE,
                    key=make_key("goal", undated),
                    due_at=_due(dates, s, e, occurred_at),
                )
            )
        # "Wanna see my moves?" is an invitation, not a plan.
        m2 = _SUBJECTLESS.match(sent) if not sent.rstrip().endswith("?") else None
        if m2 is not None:
            obj, undated = _goal_object(sent, m2.end(), s, dates)
            if _usable(obj, m2["verb"]):
                verb = _SUBJECTLESS_VERB[" ".join(m2["verb"].casefold().split())]
                add(
                    ExtractedGoal(
                        text=f"{subject.display} {verb} {third_person(obj)}",
                        status=GoalStatus.ACTIVE,
                        key=make_key("goal", undated),
                        due_at=_due(dates, s, e, occurred_at),
                    )
                )
    return out


def _text(subject: Subject, m: re.Match[str], sent: str, obj: str) -> str:
    verb = " ".join(sent[m.start() + 1 : m.end()].split())  # skip the "I"
    return f"{subject.display} {conjugate(verb)} {third_person(obj)}"
