"""A query without the speakers' names it holds.

A question about one person ("What might John's financial status be?") embeds close to every
turn that says the name: the short derived memories ("John values family time") and greetings
("Hey John! ...") that fill the first results, rather than the turn about money. Recall searches
the vectors a second time with the query as it reads without the names ("What might financial
status be?"), so that what it asks about weighs as much as whom (BENCHMARKS.md, "Recall round
five"). The names are the user's speakers' (`RelatedWords.speakers`), not a list of any
language's names: a name that is not a speaker of this user stays in the query.
"""

from __future__ import annotations

import re

# A word as the full-text indexes see it (domain.words), with an English possessive kept on.
_WORD = re.compile(r"[^\W_]+(?:['\u2019][sS])?")
_POSSESSIVE = re.compile(r"['\u2019][sS]$")


def without_names(query: str, names: frozenset[str]) -> str | None:
    """`query` with the words that are parts of `names` (casefolded) taken out, possessive
    and all; None when it holds none of them, or nothing but them."""
    parts: list[str] = []
    last = 0
    for match in _WORD.finditer(query):
        if _POSSESSIVE.sub("", match.group(0)).casefold() in names:
            parts.append(query[last : match.start()])
            last = match.end()
    if not parts:
        return None
    parts.append(query[last:])
    out = " ".join("".join(parts).split())
    return out if any(c.isalnum() for c in out) else None
