"""Name normalisation shared by entity resolution and the stores' name lookups.

Stores index entity names and aliases under this form and `GraphStore.memories.find_entities`
compares against it, so resolution and every store must use this one function.
"""

from __future__ import annotations

import re
import unicodedata

# Formal honorifics only. "Uncle Bob" and "Coach Taylor" keep their prefix: stripping it would
# merge them with any other Bob or Taylor the user knows.
HONORIFICS = frozenset(
    {"dr", "mr", "mrs", "ms", "mx", "miss", "prof", "professor", "sir", "dame", "rev", "mme"}
)

_POSSESSIVE = re.compile(r"['\u2019]s?$")
_NON_WORD = re.compile(r"[^\w\s]+")
_SPACES = re.compile(r"\s+")


def normalise_name(name: str) -> str:
    """Casefold, drop accents, possessive 's, punctuation, honorifics and a leading "the".

    "Dr. Lee's" -> "lee"; "  The  Beatles " -> "beatles"; "José" -> "jose";
    "Jean-Luc" -> "jean luc".
    Idempotent: normalising a normalised name changes nothing.
    """
    text = unicodedata.normalize("NFKD", name.strip())
    text = "".join(c for c in text if not unicodedata.combining(c)).casefold()
    text = _POSSESSIVE.sub("", text)
    text = _NON_WORD.sub(" ", text.replace("_", " "))
    words = _SPACES.sub(" ", text).strip().split(" ")
    # Keep the last word even if it looks like an honorific: "Mr" alone is still a name string.
    while len(words) > 1 and (words[0] in HONORIFICS or words[0] == "the"):
        words.pop(0)
    return " ".join(w for w in words if w)
