"""What a content word is (domain/words.py), per text and counted over many texts."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from persona_server.domain.words import content_word_counts, content_words


def test_content_words_drop_stop_words_numbers_and_short_words() -> None:
    text = "We took the kids to the museum in 2023, the kids loved it: ok!"
    assert content_words(text) == ["took", "kids", "museum", "loved"]
    assert content_words("Dr. Lee", min_length=1) == ["dr", "lee"]


def test_counts_are_texts_holding_a_word_not_its_occurrences() -> None:
    counts = content_word_counts(["Kids, kids, kids!", "The kids at the museum", "A quiet day"])
    assert counts == {"kids": 2, "museum": 1, "quiet": 1, "day": 1}
    assert list(counts) == ["kids", "museum", "quiet", "day"]  # first appearance first


@given(st.lists(st.text(alphabet="abc 1Xthe,", max_size=30), max_size=8))
def test_counts_agree_with_the_words_of_each_text(texts: list[str]) -> None:
    expected: dict[str, int] = {}
    for text in texts:
        for word in content_words(text):
            expected[word] = expected.get(word, 0) + 1
    counts = content_word_counts(texts)
    assert dict(counts) == expected
    assert list(counts) == list(expected)
