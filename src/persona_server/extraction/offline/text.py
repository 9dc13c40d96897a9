"""Text plumbing the rules share: quote folding, sentence spans, clause cutting, merge keys."""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# Same-length replacements only, so offsets in the folded text are offsets in the original.
# (Curly quotes, modifier apostrophe, backtick, acute accent, no-break space.)
_FOLD = str.maketrans(
    {
        "\u2019": "'",
        "\u2018": "'",
        "\u02bc": "'",
        "`": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u00a0": " ",
    }
)


def guarded(
    pattern: re.Pattern[str], text: str, low: str, needles: tuple[str, ...]
) -> Iterable[re.Match[str]]:
    """`pattern.finditer(text)`, or nothing when `low` (text casefolded) holds none of `needles`.

    Most rules need a literal word to have any chance ("favourite", "married"); a substring
    test is far cheaper than a case-insensitive regex scan, and extraction is on the ingest path.
    """
    return pattern.finditer(text) if any(n in low for n in needles) else ()


def word_set(block: str) -> frozenset[str]:
    """Whitespace-separated words, for the closed word lists the rules keep inline."""
    return frozenset(block.split())


def fold(text: str) -> str:
    """Straighten curly quotes so one apostrophe form is enough in every pattern."""
    return text.translate(_FOLD)


_LINKS = re.compile(r"\b(?:https?://|www\.)\S+|[\w.+-]+@[\w-]+\.[\w.-]+")


def blank_links(text: str) -> str:
    """URLs and e-mail addresses hold capitals and dots that are not names or sentence ends."""
    if "@" not in text and "http" not in text and "www." not in text:
        return text
    return _LINKS.sub(lambda m: " " * len(m.group()), text)


def in_quotes(text: str, start: int, pos: int) -> bool:
    """Is `pos` inside a double-quoted stretch that opened after `start` (reported speech)?"""
    return text.count('"', start, pos) % 2 == 1


_BOUNDARY = re.compile(r"[.!?…]+[\"')\]]*(?=\s|$)|\n+")
_ABBREVIATIONS = frozenset(
    {
        "dr", "mr", "mrs", "ms", "mx", "prof", "st", "jr", "sr", "vs", "etc", "e.g", "i.e",
        "approx", "no", "vol", "inc", "ltd", "co", "corp", "mt", "ft", "rev", "capt", "sgt",
        "lt", "col", "gen", "gov", "sen", "rep", "ave", "rd", "blvd", "u.s", "u.k", "a.m", "p.m",
    }
)  # fmt: skip
_WORD_BEFORE = re.compile(r"([\w.]+)$")


@dataclass(frozen=True, slots=True)
class Sentences:
    """Sentence spans over one text: (start, end) offsets, start at the first visible char."""

    spans: tuple[tuple[int, int], ...]
    starts: tuple[int, ...]

    def index_of(self, pos: int) -> int:
        return max(0, bisect_right(self.starts, pos) - 1)

    def span_of(self, pos: int) -> tuple[int, int]:
        return self.spans[self.index_of(pos)] if self.spans else (0, 0)


def iter_sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each sentence, lazily: the summary stops at the first good one."""
    start = 0
    for m in _BOUNDARY.finditer(text):
        if m.group()[0] == ".":
            # "Dr. Lee", "St. Louis", "J. K. Rowling": a period after these does not end anything.
            before = _WORD_BEFORE.search(text, max(0, m.start() - 12), m.start())
            word = before.group(1).casefold() if before else ""
            if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
                continue
        span = _trim_span(text, start, m.end())
        if span is not None:
            yield span
        start = m.end()
    span = _trim_span(text, start, len(text))
    if span is not None:
        yield span


def split_sentences(text: str) -> Sentences:
    spans = tuple(iter_sentence_spans(text))
    return Sentences(spans=spans, starts=tuple(s for s, _ in spans))


def _trim_span(text: str, start: int, end: int) -> tuple[int, int] | None:
    while start < end and not text[start].isalnum() and text[start] not in "\"'(":
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


# Markers that put a sentence in the future; a past marker wins over them ("I was going to").
_FUTURE = re.compile(
    r"\b(?:will|won't|shall|gonna|going to|plan|plans|planning|hope to|hoping to|want to|"
    r"wanna|next|upcoming|coming up|can't wait|cannot wait|looking forward|tomorrow|soon|"
    r"intend|scheduled|about to|would like|would love)\b|'ll\b|'d (?:like|love)\b|"
    # "I'm flying to Rome in March": the present progressive usually names an arrangement.
    r"\b(?:am|'m|are|'re)\s+\w+ing\b",
    re.IGNORECASE,
)
_PAST = re.compile(r"\b(?:was|were|went|did|had|ago|yesterday|last|used to)\b", re.IGNORECASE)


def is_future(sentence: str) -> bool:
    return _FUTURE.search(sentence) is not None and _PAST.search(sentence) is None


_QUESTION_START = re.compile(
    r"^\W*(?:do|does|did|is|are|was|were|have|has|had|will|would|can|could|should|shall|"
    r"what|where|when|why|how|who|which|whose|may|might|aren't|isn't|don't|didn't)\b",
    re.IGNORECASE,
)


def is_question(sentence: str) -> bool:
    """A real question ("Did you move to Paris?"), not a statement with a tag ("..., right?")."""
    return sentence.rstrip().endswith("?") and _QUESTION_START.match(sentence) is not None


# Where an object phrase ends: punctuation or a word that opens a new clause.
_CLAUSE_END = re.compile(
    r"[.,;:!?()\"\n]|\s[-\u2013\u2014]\s|\s(?:and|but|because|cause|cuz|since|so|when|while|which|who|"
    r"if|as|though|although|whereas|until|unless|or|lol|haha|whenever)\b",
    re.IGNORECASE,
)
# Words that may stay in a readable object but say nothing about what it is.
_TAIL_FILLER = re.compile(
    r"(?:\s+(?:a lot|so much|very much|too|as well|anymore|lately|these days|right now|now|"
    r"though|tho|really|either|at all|more|again|recently|a bit|all the time))+$",
    re.IGNORECASE,
)


def cut_clause(text: str, start: int, max_words: int = 10) -> tuple[str, int]:
    """The phrase starting at `start` up to the end of its clause; returns (phrase, end)."""
    m = _CLAUSE_END.search(text, start)
    end = m.start() if m else len(text)
    phrase = text[start:end]
    words = phrase.split()
    if len(words) > max_words:
        words = words[:max_words]
    out = _TAIL_FILLER.sub("", " ".join(words)).strip()
    return out, start + len(phrase)


# "what I like to hear", "a job I enjoy", "something I want to tell you": the "I" opens a
# relative clause about something else, not a statement about the speaker.
_RELATIVE_BEFORE = re.compile(
    r"\b(?:what|which|that|whatever|something|anything|everything|things|stuff|one|ones)\s*$",
    re.IGNORECASE,
)


def relative_clause_before(sentence: str, pos: int) -> bool:
    return _RELATIVE_BEFORE.search(sentence, 0, pos) is not None


_PRONOUNS = {"my": "their", "me": "them", "myself": "themselves", "mine": "theirs", "i": "they"}
_PRONOUN_RE = re.compile(r"\b(?:my|me|myself|mine|I)\b")


def third_person(phrase: str) -> str:
    """Rewrite the speaker's own pronouns so a fact reads as being about them."""
    return _PRONOUN_RE.sub(lambda m: _PRONOUNS[m.group().casefold()], phrase)


# Words dropped from merge keys: they change how a phrase reads, not what it names.
_KEY_STOP = word_set(
    """
    a an the my our your his her their its some any this that these those more much many
    lots lot of really very so just also too all to be being own bit kind sort such and or
    new good great someday eventually soon finally definitely maybe probably hopefully
    actually again
    """
)
_IRREGULAR = {
    "went": "go", "gone": "go", "ran": "run", "got": "get", "gotten": "get", "made": "make",
    "took": "take", "taken": "take", "wrote": "write", "written": "write", "bought": "buy",
    "saw": "see", "seen": "see", "did": "do", "done": "do", "built": "build", "found": "find",
    "began": "begin", "begun": "begin", "became": "become", "learnt": "learn", "met": "meet",
    "won": "win", "sold": "sell", "left": "leave", "flew": "fly", "flown": "fly",
    "drove": "drive", "driven": "drive", "gave": "give", "given": "give", "grew": "grow",
    "grown": "grow", "sang": "sing", "sung": "sing", "swam": "swim", "taught": "teach",
    "thought": "think", "brought": "bring", "caught": "catch", "kept": "keep", "slept": "sleep",
    "spent": "spend", "lost": "lose", "paid": "pay", "said": "say", "told": "tell",
    "felt": "feel", "held": "hold", "knew": "know", "known": "know", "rode": "ride",
    "ridden": "ride", "ate": "eat", "eaten": "eat", "drew": "draw", "drawn": "draw",
    "chose": "choose", "chosen": "choose", "spoke": "speak", "broke": "break",
    "stood": "stand", "wore": "wear", "threw": "throw", "sent": "send", "fell": "fall",
    "sat": "sit", "heard": "hear", "meant": "mean", "led": "lead", "hung": "hang",
    "shot": "shoot", "woke": "wake", "forgot": "forget", "fed": "feed", "beat": "beat",
    "climbed": "climb", "children": "child", "kids": "kid", "people": "person", "men": "man",
    "women": "woman", "feet": "foot", "teeth": "tooth", "mice": "mouse", "geese": "goose",
}  # fmt: skip
_KEY_WORD = re.compile(r"[a-z0-9]+(?:['-][a-z0-9]+)*")


def stem(word: str) -> str:
    """A crude, consistent stemmer for merge keys: "painting", "paints", "painted" -> "paint".

    Consistency matters, not linguistic accuracy: both sides of a comparison go through it.
    """
    w = _IRREGULAR.get(word, word)
    if len(w) <= 3:
        return w
    cut = True
    if w.endswith(("ies", "ied")) and len(w) > 4:
        return w[:-3] + "y"  # studies, studied -> study
    if w.endswith("ing") and len(w) > 5:
        w = w[:-3]
    elif (w.endswith("ed") and len(w) > 4) or w.endswith(("ches", "shes", "sses", "xes", "zes")):
        w = w[:-2]
    elif w.endswith("s") and not w.endswith(("ss", "us", "is")):
        w = w[:-1]
    else:
        cut = False
    if cut and len(w) > 2 and w[-1] == w[-2] and w[-1] not in "lsz":
        w = w[:-1]  # running -> runn -> run
    if w.endswith("ie") and len(w) > 3:
        w = w[:-2] + "y"  # movie -> movy, as movies -> movy above
    elif w.endswith("e") and len(w) > 3:
        w = w[:-1]  # hike / hiking -> hik
    return w


def content_stems(phrase: str) -> list[str]:
    words = _KEY_WORD.findall(phrase.casefold())
    return [stem(w.replace("'s", "")) for w in words if w not in _KEY_STOP]


def make_key(slot: str, phrase: str, max_words: int = 5) -> str:
    """`slot:stemmed words`, e.g. make_key("likes", "the hiking trips") -> "likes:hik trip"."""
    stems = content_stems(phrase)[:max_words]
    return f"{slot}:{' '.join(stems)}" if stems else ""


_EXPANSIONS = {
    "i'm": "I am", "im": "I am", "i've": "I have", "i'd": "I would", "i'll": "I will",
    "we're": "we are", "we've": "we have", "we'll": "we will", "we'd": "we would",
    "gonna": "going to", "wanna": "want to", "gotta": "have to", "i": "I",
}  # fmt: skip
_EXPANDABLE = re.compile(
    r"(?<![\w'])(?:i'm|im|i've|i'd|i'll|we're|we've|we'll|we'd|gonna|wanna|gotta|i)(?![\w'])",
    re.IGNORECASE,
)


def _expand_one(m: re.Match[str]) -> str:
    word = m.group()
    if word in ("IM", "Im") and m.end() < len(m.string) and m.string[m.end()] == ".":
        return word  # "IM." is a noun, not "I am"
    out = _EXPANSIONS[word.casefold()]
    # Keep a capital at a sentence start ("Gonna..." -> "Going to...") for the entity rules.
    return out[0].upper() + out[1:] if word[0].isupper() and out[0] != "I" else out


def expand(text: str) -> str:
    """Undo the contractions the rules care about: one spelling per form, fewer patterns.

    Runs before every rule, so offsets from later steps refer to the expanded text.
    """
    return _EXPANDABLE.sub(_expand_one, text)


_ADVERBS = word_set(
    """
    really just absolutely truly totally also still always genuinely kinda so personally
    definitely seriously actually especially simply now never honestly deeply strongly
    particularly finally even ever sometimes usually often
    """
)
_AS_IS = word_set(
    """will would can can't cannot could should might must may shall won't wouldn't"""
)
_THIRD = {"am": "is", "are": "is", "have": "has", "do": "does", "don't": "doesn't", "was": "was"}


def conjugate(phrase: str) -> str:
    """First-person verb phrase -> third person: "really love" -> "really loves"."""
    words = phrase.split()
    for i, w in enumerate(words):
        lw = w.casefold()
        if lw in _ADVERBS:
            continue
        if lw in _THIRD:
            words[i] = _THIRD[lw]
        elif lw in _AS_IS or lw.endswith("ed") or lw in _IRREGULAR or not lw.isalpha():
            pass
        elif lw.endswith(("s", "sh", "ch", "x", "z", "o")):
            words[i] = w + "es"
        elif lw.endswith("y") and len(lw) > 1 and lw[-2] not in "aeiou":
            words[i] = w[:-1] + "ies"
        else:
            words[i] = w + "s"
        break
    return " ".join(words)
