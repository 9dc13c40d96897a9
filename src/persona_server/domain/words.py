"""Words: too common to search for (both stores' full-text queries), and what a word is."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# fmt: off
STOP_WORDS = frozenset(
    {
        "a", "about", "above", "after", "again", "against", "all", "am", "an", "and", "any",
        "are", "as", "at", "be", "because", "been", "before", "being", "below", "between",
        "both", "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during",
        "each", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
        "here", "hers", "herself", "him", "himself", "his", "how", "i", "if", "in", "into",
        "is", "it", "its", "itself", "just", "me", "more", "most", "my", "myself", "no", "nor",
        "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours",
        "ourselves", "out", "over", "own", "same", "she", "should", "so", "some", "such",
        "than", "that", "the", "their", "theirs", "them", "themselves", "then", "there",
        "these", "they", "this", "those", "through", "to", "too", "under", "until", "up",
        "very", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom",
        "why", "will", "with", "would", "you", "your", "yours", "yourself", "yourselves",
    }
)
# fmt: on

# Same notion of a token as the full-text indexes (FTS5 unicode61): runs of letters and digits.
_TOKEN = re.compile(r"[^\W_]+")


def _is_content(word: str, min_length: int) -> bool:
    return len(word) >= min_length and not word.isdigit() and word not in STOP_WORDS


def content_words(text: str, min_length: int = 3) -> list[str]:
    """The distinct words of `text` that carry content, casefolded, in order of appearance:
    no stop words, no numbers, none shorter than `min_length`."""
    return [w for w in dict.fromkeys(_TOKEN.findall(text.casefold())) if _is_content(w, min_length)]


def content_word_counts(texts: Iterable[str], min_length: int = 3) -> Counter[str]:
    """In how many of `texts` each content word (as `content_words`) is, in order of first
    appearance. Words are judged once each, not once per text: for the thousands of texts of
    a large user that is most of the cost."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(dict.fromkeys(_TOKEN.findall(text.casefold())).keys())
    return Counter({w: n for w, n in counts.items() if _is_content(w, min_length)})
