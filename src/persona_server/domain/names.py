"""Name normalisation shared by entity resolution and the stores' name lookups.

Stores index entity names and aliases under this form, so lookups only match if both sides use
the same function.
"""

from __future__ import annotations

import re
import unicodedata

# Apostrophes are dropped rather than turned into spaces so "O'Brien" and "OBrien" meet.
_APOSTROPHES = frozenset("'\u2019\u02bc`\u00b4")
_WHITESPACE = re.compile(r"\s+")


def normalise_name(name: str) -> str:
    """Casefold, strip punctuation and collapse whitespace: "Dr. Lee" -> "dr lee"."""
    # NFKC first so full-width and compatibility forms compare equal to their plain forms.
    text = unicodedata.normalize("NFKC", name).casefold()
    out: list[str] = []
    for ch in text:
        if ch in _APOSTROPHES:
            continue
        category = unicodedata.category(ch)
        if category.startswith("P"):
            out.append(" ")
        else:
            out.append(ch)
    return _WHITESPACE.sub(" ", "".join(out)).strip()
