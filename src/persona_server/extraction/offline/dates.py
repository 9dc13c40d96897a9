"""Date expressions and the spans they name, resolved against the item's `occurred_at`.

Every span is half-open [start, end) in UTC at day granularity or coarser. The reference is
always the event time of the item, never the wall clock, so re-ingesting old data resolves
"yesterday" to the same day. Weeks start on Monday. Seasons are northern-hemisphere.

Expressions that name a time without saying which one ("in March", "on Friday", "this
summer") go to the most recent one on or before the reference, unless the sentence talks about
the future ("I'm going to Paris in March"), then to the next one.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from persona_server.extraction.offline.text import Sentences, is_future
from persona_server.ports.extractor import ExtractedDate

Span = tuple[date, date]  # [start, end) in days

_MONTH_NUM = {
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
    "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12,
}  # fmt: skip
_WEEKDAY_NUM = {
    "monday": 0, "tuesday": 1, "wednesday": 2, "thursday": 3,
    "friday": 4, "saturday": 5, "sunday": 6,
}  # fmt: skip
_NUMBER_WORDS: dict[str, tuple[int, int]] = {
    "a": (1, 1), "an": (1, 1), "one": (1, 1), "two": (2, 2), "three": (3, 3), "four": (4, 4),
    "five": (5, 5), "six": (6, 6), "seven": (7, 7), "eight": (8, 8), "nine": (9, 9),
    "ten": (10, 10), "eleven": (11, 11), "twelve": (12, 12), "couple": (2, 2),
    "a couple": (2, 2), "a couple of": (2, 2), "couple of": (2, 2), "a few": (2, 4),
    "few": (2, 4), "several": (3, 7), "some": (2, 5),
}  # fmt: skip

_MONTH_ABBR = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|"
    r"sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_MONTH_FULL = (
    r"(?:january|february|march|april|may|june|july|august|september|october|november|december)"
)
_WEEKDAY = r"(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday)"
_NUM = (
    r"(?:\d{1,3}|a couple of|a couple|couple of|couple|a few|few|several|some|an?|one|two|"
    r"three|four|five|six|seven|eight|nine|ten|eleven|twelve)"
)
_SEASON = r"(?:spring|summer|autumn|fall|winter)"
_YEAR = r"(?:19\d\d|20\d\d)"
_I = re.IGNORECASE

_ISO = re.compile(rf"\b({_YEAR})[-/.](\d{{1,2}})[-/.](\d{{1,2}})\b")
_NUMERIC = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b")
_DAY_MONTH = re.compile(
    rf"\b(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?(?:\s+of)?\s+({_MONTH_ABBR})(?:,?\s+({_YEAR}))?\b",
    _I,
)
_MONTH_DAY = re.compile(
    rf"\b({_MONTH_ABBR})\s+(?:the\s+)?(\d{{1,2}})(?:st|nd|rd|th)?\b(?:,?\s+({_YEAR})\b)?", _I
)
_MONTH_YEAR = re.compile(rf"\b({_MONTH_ABBR})(?:\s+of)?,?\s+({_YEAR})\b", _I)
_MONTH_CUED = re.compile(
    rf"\b(last|this past|this|next|in|during|since|until|till|by|early|late|mid-?|"
    rf"end of|beginning of|start of|the end of|the beginning of|the start of)\s+"
    rf"({_MONTH_FULL})\b(?!\s+\d)",
    _I,
)
# A capitalised month alone ("March was hard"); "May" is left out, it is mostly a verb.
_MONTH_BARE = re.compile(
    r"\b(January|February|March|April|June|July|August|September|October|November|December)\b"
    r"(?!\s+\d)(?!\s+[A-Z])"
)
_YEAR_CUED = re.compile(
    rf"\b(?:in|since|during|of|by|from|until|till|through|around|circa|early|late|mid-?|"
    rf"back in|year|summer|spring|winter|fall|autumn)\s+({_YEAR})\b(?!\s*[-/]\s*\d)",
    _I,
)
_DECADE = re.compile(r"\b(?:the\s+)?(19|20)?([0-9])0'?s\b", _I)
_SEASON_RE = re.compile(
    rf"\b(?:(last|this past|past|this|next|this coming)\s+({_SEASON})|({_SEASON})\s+(?:of\s+)?"
    rf"({_YEAR})|(?:in|during|over)\s+(?:the\s+)?({_SEASON}))\b",
    _I,
)
_HOLIDAY = re.compile(
    r"\b(?:(last|this|next)\s+)?(christmas eve|christmas|new year's eve|new years eve|"
    r"new year's day|halloween|valentine's day|valentines day|thanksgiving|independence day|"
    r"(?:the\s+)?fourth of july|(?:the\s+)?4th of july)\b",
    _I,
)
_DAY_WORD = re.compile(
    r"\b(the day before yesterday|the day after tomorrow|yesterday|today|tonight|tomorrow|"
    r"this morning|this afternoon|this evening|last night|earlier today)\b",
    _I,
)
_UNIT_REL = re.compile(
    r"\b(last|this past|this|next|this coming|the coming|coming|the past|past|earlier this|"
    r"later this|the following|the previous)\s+(week|weekend|month|year)\b",
    _I,
)
_WEEKDAY_RE = re.compile(
    rf"\b(?:(last|this past|this|next|this coming|on|on this|on the|by|until|till|before)\s+)?"
    rf"({_WEEKDAY})\b"
    rf"(?:\s+(?:night|morning|afternoon|evening))?",
    _I,
)
# Abbreviated weekdays ("last Fri") only with a modifier: "sat" and "sun" are words too.
_WEEKDAY_ABBR = re.compile(
    r"\b(last|this past|this|next|this coming|on)\s+(mon|tues?|wed|weds|thu|thur|thurs|fri|sat|sun)"
    r"\b",
    _I,
)
_ABBR_DAY = {"mon": "monday", "tue": "tuesday", "tues": "tuesday", "wed": "wednesday",
             "weds": "wednesday", "thu": "thursday", "thur": "thursday", "thurs": "thursday",
             "fri": "friday", "sat": "saturday", "sun": "sunday"}  # fmt: skip
_AGO = re.compile(rf"\b({_NUM})\s+(day|week|weekend|month|year)s?\s+(?:ago|back)\b", _I)
_IN_FUTURE = re.compile(rf"\bin\s+({_NUM})\s+(day|week|month|year)s?(?:'s?\s+time)?\b", _I)
_ROLLING = re.compile(
    rf"\b(?:the\s+)?(?:past|last|previous)\s+({_NUM})\s+(day|week|month|year)s\b", _I
)
_OTHER_DAY = re.compile(r"\bthe other (day|week|night)\b", _I)
_WEEKEND_BARE = re.compile(r"\b(?:over|on|during|at)\s+the\s+weekend\b", _I)


def _ymd(y: int, m: int, d: int) -> date | None:
    try:
        return date(y, m, d)
    except ValueError:
        return None


def _month_span(y: int, m: int) -> Span:
    nxt = date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)
    return date(y, m, 1), nxt


def _year_span(y: int) -> Span:
    return date(y, 1, 1), date(y + 1, 1, 1)


def _day_span(d: date) -> Span:
    return d, d + timedelta(days=1)


def _week_start(d: date) -> date:
    return d - timedelta(days=d.weekday())


def _week_span(d: date) -> Span:
    s = _week_start(d)
    return s, s + timedelta(days=7)


def _weekend_span(d: date) -> Span:
    """The Saturday-Sunday of the Monday-based week containing d."""
    s = _week_start(d) + timedelta(days=5)
    return s, s + timedelta(days=2)


def _add_months(d: date, n: int) -> date:
    idx = d.year * 12 + d.month - 1 + n
    return date(idx // 12, idx % 12 + 1, 1)


def _pick(
    instance: Callable[[int], Span | None], today: date, mode: str, skip_recent: bool = False
) -> Span | None:
    """Choose one yearly instance (of a month, season, holiday) relative to `today`.

    mode: "last" = latest that ended on or before today; "this" = the one in progress, else the
    one this year; "next" = first that starts after today; "past" = latest started on or before
    today; "future" = first not yet over. `skip_recent`: for months, "last March" said in April
    means the March a year before (the one just gone is "last month").
    """
    spans = [s for s in (instance(y) for y in range(today.year - 2, today.year + 3)) if s]
    if mode == "last":
        done = [s for s in spans if s[1] <= today]
        if skip_recent and len(done) > 1 and (today - done[-1][1]).days < 31:
            return done[-2]
        return done[-1] if done else None
    if mode == "next":
        later = [s for s in spans if s[0] > today]
        return later[0] if later else None
    if mode == "this":
        cur = [s for s in spans if s[0] <= today < s[1]]
        if cur:
            return cur[0]
        same_year = [s for s in spans if s[0].year == today.year]
        return same_year[0] if same_year else None
    if mode == "future":
        later = [s for s in spans if s[1] > today]
        return later[0] if later else None
    started = [s for s in spans if s[0] <= today]
    return started[-1] if started else None


def _season_instance(season: str) -> Callable[[int], Span]:
    season = "autumn" if season == "fall" else season
    start_month = {"spring": 3, "summer": 6, "autumn": 9, "winter": 12}[season]

    def inst(y: int) -> Span:
        start = date(y, start_month, 1)
        return start, _add_months(start, 3)

    return inst


def _thanksgiving(y: int) -> date:
    first = date(y, 11, 1)
    first_thu = first + timedelta(days=(3 - first.weekday()) % 7)
    return first_thu + timedelta(weeks=3)


def _holiday_instance(name: str) -> Callable[[int], Span | None]:
    key = name.casefold().replace("the ", "").replace("'", "")
    fixed = {
        "christmas": (12, 25), "christmas eve": (12, 24), "new years eve": (12, 31),
        "new years day": (1, 1), "halloween": (10, 31), "valentines day": (2, 14),
        "independence day": (7, 4), "fourth of july": (7, 4), "4th of july": (7, 4),
    }  # fmt: skip

    def inst(y: int) -> Span | None:
        if key == "thanksgiving":
            return _day_span(_thanksgiving(y))
        md = fixed.get(key)
        return _day_span(date(y, *md)) if md else None

    return inst


def _count(word: str) -> tuple[int, int]:
    w = " ".join(word.casefold().split())
    if w.isdigit():
        return int(w), int(w)
    return _NUMBER_WORDS.get(w, (1, 1))


def _unit_span(unit: str, d: date) -> Span:
    if unit == "day":
        return _day_span(d)
    if unit == "week":
        return _week_span(d)
    if unit == "weekend":
        return _weekend_span(d)
    if unit == "month":
        return _month_span(d.year, d.month)
    return _year_span(d.year)


def _shift(unit: str, d: date, n: int) -> date:
    if unit == "day":
        return d + timedelta(days=n)
    if unit in ("week", "weekend"):
        return d + timedelta(weeks=n)
    if unit == "month":
        return _add_months(d, n)
    return date(d.year + n, 1, 1)


def _month_of(word: str) -> int:
    return _MONTH_NUM[word.casefold()[:3]]


class _Collector:
    """Gathers candidate spans; overlapping matches keep the longest expression."""

    def __init__(self, text: str, sentences: Sentences, today: date) -> None:
        self.text = text
        self.low = text.casefold()
        self.sentences = sentences
        self.today = today
        self.found: list[tuple[int, int, Span]] = []

    def scan(
        self, pattern: re.Pattern[str], needles: tuple[str, ...], also: tuple[str, ...] = ()
    ) -> Iterator[re.Match[str]]:
        """`pattern.finditer`, skipped unless the text holds one of `needles` (and of `also`).

        A substring test costs a fraction of a case-insensitive regex scan, and most chat
        lines name no date at all: this keeps the date rules cheap.
        """
        low = self.low
        if any(n in low for n in needles) and (not also or any(n in low for n in also)):
            yield from pattern.finditer(self.text)

    def add(self, m: re.Match[str], span: Span | None) -> None:
        if span is not None and span[0] < span[1]:
            self.found.append((m.start(), m.end(), span))

    def future(self, pos: int) -> bool:
        s, e = self.sentences.span_of(pos)
        return is_future(self.text[s:e])

    def results(self) -> list[DateHit]:
        chosen: list[tuple[int, int, Span]] = []
        for cand in sorted(self.found, key=lambda c: (c[0] - c[1], c[0])):
            if all(cand[1] <= c[0] or cand[0] >= c[1] for c in chosen):
                chosen.append(cand)
        chosen.sort()
        return [
            DateHit(
                start=s,
                end=e,
                date=ExtractedDate(
                    text=self.text[s:e], start=_midnight(sp[0]), end=_midnight(sp[1])
                ),
            )
            for s, e, sp in chosen
        ]


def _midnight(d: date) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC)


_MONTH_STEMS = tuple(_MONTH_NUM)
_MONTH_NAMES = (
    "january", "february", "march", "april", "may", "june",
    "july", "august", "september", "october", "november", "december",
)  # fmt: skip
_DIGITS = tuple("0123456789")
_DAY_WORDS = (
    "yesterday", "today", "tonight", "tomorrow", "this morning", "this afternoon",
    "this evening", "last night",
)  # fmt: skip
_UNIT_MODIFIERS = (
    "last ", "this ", "next ", "coming ", "past ", "earlier ", "later ", "following ",
    "previous ",
)  # fmt: skip
_WEEKDAY_NAMES = tuple(_WEEKDAY_NUM)
_WEEKDAY_ABBRS = (" mon", " tue", " wed", " thu", " fri", " sat", " sun")
_HOLIDAYS = (
    "christmas", "new year", "halloween", "valentine", "thanksgiving", "independence", "july",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class DateHit:
    """A resolved date and where its expression sits in the text (for same-sentence rules)."""

    start: int
    end: int
    date: ExtractedDate


def extract_dates(text: str, sentences: Sentences, occurred_at: datetime) -> list[ExtractedDate]:
    return [h.date for h in find_dates(text, sentences, occurred_at)]


def find_dates(text: str, sentences: Sentences, occurred_at: datetime) -> list[DateHit]:
    """All date expressions in `text`, resolved against `occurred_at` (any tz; naive = UTC)."""
    ref = occurred_at if occurred_at.tzinfo else occurred_at.replace(tzinfo=UTC)
    today = ref.astimezone(UTC).date()
    col = _Collector(text, sentences, today)
    _absolute(col)
    _relative(col)
    _named_periods(col)
    return col.results()


def _absolute(col: _Collector) -> None:
    for m in col.scan(_ISO, ("-", "/", "."), _DIGITS):
        d = _ymd(int(m[1]), int(m[2]), int(m[3]))
        col.add(m, _day_span(d) if d else None)
    for m in col.scan(_NUMERIC, ("/",), _DIGITS):
        a, b, y = int(m[1]), int(m[2]), int(m[3])
        y = y + 2000 if y < 100 else y
        # US order (month first) unless the first number cannot be a month.
        d = _ymd(y, b, a) if a > 12 else _ymd(y, a, b)
        col.add(m, _day_span(d) if d else None)
    for m in col.scan(_DAY_MONTH, _MONTH_STEMS, _DIGITS):
        if m[2] == "may" and not m[3]:
            continue  # "2 may come": lowercase "may" without a year is the verb
        _add_day_month(col, m, int(m[1]), _month_of(m[2]), m[3])
    for m in col.scan(_MONTH_DAY, _MONTH_STEMS, _DIGITS):
        if m[1] == "may" and not m[3]:
            continue
        _add_day_month(col, m, int(m[2]), _month_of(m[1]), m[3])
    for m in col.scan(_MONTH_YEAR, _MONTH_STEMS, _DIGITS):
        col.add(m, _month_span(int(m[2]), _month_of(m[1])))
    for m in col.scan(_YEAR_CUED, ("19", "20")):
        col.add(m, _year_span(int(m[1])))
    for m in col.scan(_DECADE, ("0s", "0's")):
        century = int(m[1]) * 100 if m[1] else (2000 if int(m[2]) < 3 else 1900)
        if m[1] is None and not m.group().casefold().startswith("the"):
            continue  # "20s" alone is more often an age than a decade
        start = century + int(m[2]) * 10
        col.add(m, (date(start, 1, 1), date(start + 10, 1, 1)))


def _add_day_month(
    col: _Collector, m: re.Match[str], day: int, month: int, year: str | None
) -> None:
    if year:
        d = _ymd(int(year), month, day)
        col.add(m, _day_span(d) if d else None)
        return

    def inst(y: int) -> Span | None:
        d = _ymd(y, month, day)
        return _day_span(d) if d else None

    col.add(m, _pick(inst, col.today, "future" if col.future(m.start()) else "past"))


def _relative(col: _Collector) -> None:
    today = col.today
    for m in col.scan(_DAY_WORD, _DAY_WORDS):
        w = m[1].casefold()
        offset = {
            "the day before yesterday": -2, "yesterday": -1, "last night": -1,
            "tomorrow": 1, "the day after tomorrow": 2,
        }.get(w, 0)  # fmt: skip
        col.add(m, _day_span(today + timedelta(days=offset)))
    for m in col.scan(_UNIT_REL, ("week", "month", "year"), _UNIT_MODIFIERS):
        col.add(m, _unit_relative(m[1].casefold(), m[2].casefold(), today))
    for m in col.scan(_WEEKDAY_RE, _WEEKDAY_NAMES):
        col.add(m, _weekday(col, m, m[1], m[2]))
    for m in col.scan(_WEEKDAY_ABBR, _WEEKDAY_ABBRS):
        if m[1].casefold() == "on" and m[2].casefold() in ("sat", "sun"):
            continue  # "on sat" is rare next to "sat on"
        col.add(m, _weekday(col, m, m[1], _ABBR_DAY[m[2].casefold()]))
    for m in col.scan(_AGO, (" ago", " back")):
        lo, hi = _count(m[1])
        unit = m[2].casefold()
        a = _unit_span(unit, _shift(unit, today, -hi))
        b = _unit_span(unit, _shift(unit, today, -lo))
        col.add(m, (a[0], b[1]))
    for m in col.scan(_IN_FUTURE, ("in ",), (" day", " week", " month", " year")):
        lo, hi = _count(m[1])
        unit = m[2].casefold()
        a = _unit_span(unit, _shift(unit, today, lo))
        b = _unit_span(unit, _shift(unit, today, hi))
        col.add(m, (a[0], b[1]))
    for m in col.scan(
        _ROLLING, ("past ", "last ", "previous "), ("days", "weeks", "months", "years")
    ):
        _, hi = _count(m[1])
        unit = m[2].casefold()
        col.add(m, (_shift(unit, today, -hi) if unit != "year" else _years_back(today, hi),
                    today + timedelta(days=1)))  # fmt: skip
    for m in col.scan(_OTHER_DAY, ("the other ",)):
        back = 14 if m[1].casefold() == "week" else 7
        col.add(m, (today - timedelta(days=back), today))
    for m in col.scan(_WEEKEND_BARE, ("the weekend",)):
        week = timedelta(weeks=1)
        this = _weekend_span(today)
        if col.future(m.start()):
            col.add(m, this if this[1] > today else (this[0] + week, this[1] + week))
        else:
            col.add(m, this if this[0] <= today else (this[0] - week, this[1] - week))


def _years_back(today: date, n: int) -> date:
    try:
        return today.replace(year=today.year - n)
    except ValueError:  # 29 February
        return today.replace(year=today.year - n, day=28)


def _unit_relative(mod: str, unit: str, today: date) -> Span:
    if mod in ("the past", "past", "this past") and unit != "weekend":
        # Rolling window ending today: "the past week" is the last seven days.
        start = {
            "week": today - timedelta(days=7),
            "month": _add_months(today, -1).replace(day=min(today.day, 28)),
            "year": _years_back(today, 1),
        }[unit]
        return start, today + timedelta(days=1)
    if mod == "this past":  # "this past weekend" = last weekend
        mod = "last"
    this = _unit_span(unit, today)
    if mod in ("last", "the previous"):
        if unit == "weekend":
            s = _week_start(today) - timedelta(days=2)
            return s, s + timedelta(days=2)
        return _unit_span(unit, _shift(unit, today, -1))
    if mod in ("next", "the following", "the coming", "coming", "this coming"):
        if unit == "weekend" and mod != "next":
            return this if this[1] > today else _unit_span(unit, _shift(unit, today, 1))
        return _unit_span(unit, _shift(unit, today, 1))
    if mod == "earlier this":
        return this[0], max(today, this[0] + timedelta(days=1))
    if mod == "later this":
        return min(today + timedelta(days=1), this[1] - timedelta(days=1)), this[1]
    return this


def _weekday(col: _Collector, m: re.Match[str], modifier: str | None, day: str) -> Span:
    mod = (modifier or "").casefold()
    target = _WEEKDAY_NUM[day.casefold()]
    today = col.today
    back = (today.weekday() - target) % 7
    fwd = (target - today.weekday()) % 7
    if mod in ("last", "this past"):
        d = today - timedelta(days=back or 7)
    elif mod in ("next", "this coming"):
        d = today + timedelta(days=fwd or 7)
    elif mod in ("this", "on this"):
        d = _week_start(today) + timedelta(days=target)
    elif mod in ("by", "until", "till", "before") or col.future(m.start()):  # deadlines
        d = today + timedelta(days=fwd)
    else:
        d = today - timedelta(days=back)
    return _day_span(d)


def _named_periods(col: _Collector) -> None:
    today = col.today
    for m in col.scan(_MONTH_CUED, _MONTH_NAMES):
        cue = m[1].casefold()
        month = _month_of(m[2])
        if m[2] == "may":
            continue  # "this may help": lowercase "may" is the verb

        def inst(y: int, month: int = month) -> Span:
            return _month_span(y, month)

        mode = {"last": "last", "this past": "last", "this": "this", "next": "next"}.get(cue)
        if mode is None:
            mode = "future" if col.future(m.start()) else "past"
        col.add(m, _pick(inst, today, mode, skip_recent=True))
    for m in col.scan(_MONTH_BARE, _MONTH_NAMES):
        month = _month_of(m[1])

        def inst_bare(y: int, month: int = month) -> Span:
            return _month_span(y, month)

        col.add(m, _pick(inst_bare, today, "future" if col.future(m.start()) else "past"))
    for m in col.scan(_SEASON_RE, ("spring", "summer", "autumn", "fall", "winter")):
        if m[3]:
            col.add(m, _season_instance(m[3].casefold())(int(m[4])))
            continue
        season = (m[2] or m[5]).casefold()
        cue = (m[1] or "").casefold()
        mode = {"last": "last", "this past": "last", "past": "last", "this": "this",
                "next": "next", "this coming": "next"}.get(cue)  # fmt: skip
        if mode is None:
            mode = "future" if col.future(m.start()) else "past"
        col.add(m, _pick(_season_instance(season), today, mode))
    for m in col.scan(_HOLIDAY, _HOLIDAYS):
        cue = (m[1] or "").casefold()
        mode = {"last": "last", "this": "this", "next": "next"}.get(cue)
        if mode is None:
            mode = "future" if col.future(m.start()) else "past"
        col.add(m, _pick(_holiday_instance(m[2]), today, mode))


_DANGLING = re.compile(
    r"(?:\s+(?:in|on|at|by|for|from|until|since|during|this|next|last|the))+$", _I
)


def before_date(phrase: str, start: int, hits: Sequence[DateHit]) -> str:
    """`phrase` (found at `start`) cut before the first date in it: "run a marathon next year"
    -> "run a marathon". Merge keys must not depend on when something was said."""
    end = start + len(phrase)
    for h in hits:
        if start <= h.start < end:
            return _DANGLING.sub("", phrase[: h.start - start].rstrip())
    return phrase
