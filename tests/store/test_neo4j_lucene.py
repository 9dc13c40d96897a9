"""The Neo4j store's full-text query builder: user text never reaches Lucene's syntax.

Pure functions, no server: these run in every test run.
"""

from __future__ import annotations

import pytest

from persona_server.adapters.stores.neo4j.codec import owner_token
from persona_server.adapters.stores.neo4j.search import lucene_query
from persona_server.domain.models import UserRef

USER = UserRef(tenant="t", user_id="u")


@pytest.mark.parametrize(
    "text",
    [
        '"unbalanced',
        "river OR",
        "NOT river",
        'owner:"1" OR river',
        "riv*",
        "^river~2",
        "a:b\\c",
        "[1 TO 9]",
        "{x}",
        "river && cold || wide",
        "/regex/",
        "search_text:river",
        "\x00 river",
        "über café",
    ],
)
def test_lucene_query_quotes_plain_words_only(text: str) -> None:
    query = lucene_query(owner_token(USER), text)
    assert query is not None
    owner, _, words = query.partition(" AND ")
    assert owner == f'owner:"{owner_token(USER)}"'
    assert words.startswith("(") and words.endswith(")")
    for clause in words[1:-1].split(" OR "):
        field, _, term = clause.partition(":")
        assert field == "search_text"
        assert term.startswith('"') and term.endswith('"')
        assert term[1:-1].isalnum() and term[1:-1] == term[1:-1].casefold()


def test_lucene_query_without_words_is_none() -> None:
    assert lucene_query("1", "") is None
    assert lucene_query("1", "!!! ???") is None
    # Only Lucene's English stop words: the index holds none of them.
    assert lucene_query("1", "the and of") is None


def test_lucene_query_keeps_other_stop_words_when_nothing_else_is_left() -> None:
    assert lucene_query("1", "what about") == (
        'owner:"1" AND (search_text:"what" OR search_text:"about")'
    )
    assert lucene_query("1", "what about rivers") == 'owner:"1" AND (search_text:"rivers")'


def test_owner_token_is_digits_and_separates_users() -> None:
    a = owner_token(UserRef(tenant="t", user_id="u"))
    assert a.isdigit()
    assert a != owner_token(UserRef(tenant="t", user_id="v"))
    assert a != owner_token(UserRef(tenant="tu", user_id=""))
