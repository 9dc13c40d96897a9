"""The related-words channel's store reads on both stores (services/related_words.py).

The vocabulary is read through `EpisodeOps.texts`, kept current through the change log, and
the words are searched with the store's full-text (SQLite FTS5, Neo4j's Lucene index); the
unit tests cover the selection on SQLite, these check that each store gives the same answers.
Episode vectors are random (only words are compared); word vectors are the local embedder's.
"""

from __future__ import annotations

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import GraphStore, MemoryFilter
from persona_server.services.related_words import RelatedWords

from .helpers import episode, hours, put

QUESTION = "What instruments does Anna play?"


async def test_words_found_read_again_and_searched_on_each_store(
    store: GraphStore, user: UserRef, embedder: LocalOnnxEmbedder
) -> None:
    turns = [
        episode("a1", "My violin lesson got moved to Thursday.", hours(1), speaker="Anna"),
        episode("a2", "The invoice for the garage repair is due.", hours(2), speaker="Tim"),
        episode("a3", "Rain all week, awful weather.", hours(3), speaker="Anna"),
    ]
    await put(store, user, turns)
    other = UserRef(tenant=user.tenant, user_id=user.user_id + "-other")
    await put(store, other, [episode("o1", "I bought a second-hand guitar.", speaker="Sam")])

    related = RelatedWords(store, embedder, recheck_s=0.0)
    words = await related.for_query(user, QUESTION)
    assert "violin" in words and "guitar" not in words and "anna" not in words
    hits = await store.search.text(user, " ".join(words), 10, MemoryFilter())
    assert [h.memory_id for h in hits] == [turns[0].id]

    # A later episode arrives through the change log; a deleted one makes it read all again.
    cello = episode("a4", "Tried a cello at the shop today.", hours(4), speaker="Anna")
    await put(store, user, [cello])
    assert "cello" in await related.for_query(user, QUESTION)
    await store.memories.delete(user, turns[0].id)
    words = await related.for_query(user, QUESTION)
    assert "violin" not in words and "cello" in words
