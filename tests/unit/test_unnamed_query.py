"""Recall's vector search for the query without the speakers' names (services/unnamed_query.py),
on a small hand-made conversation with the real local embedder.

What is asserted: the names taken out are the user's speakers' (possessive and all), and
nothing else; a query naming no speaker is embedded and searched once, and ranks exactly as the
vector channel alone at the two weights together; a query naming one is embedded in one call
with its unnamed form, whose vector is cached (a stream that brings its own query vector does
not embed it again); and the channel lifts a turn about what the question asks over turns that
only share the name.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import SourceType, UserRef
from persona_server.services.commands import IngestCommand, NewItem, RecallQuery
from persona_server.services.ingest import IngestService
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.recall import RecallService, RecallTuning
from persona_server.services.related_words import RelatedWords
from persona_server.services.results import ScoredMemory
from persona_server.services.text_vectors import TextVectorCache as VectorCache
from persona_server.services.unnamed_query import without_names

USER = UserRef(tenant="t", user_id="u")
T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)
NAMES = frozenset({"nate", "joanna"})

# Joanna and Nate greet each other by name in short turns (which embed close to any question
# naming Nate); one of Nate's turns says which games console he has, without the word.
ANSWER = "I finally bought a Nintendo Switch and I play Zelda on it every evening."
TURNS = [
    ("Joanna", "Thanks Nate!"),
    ("Nate", "Hi Joanna, Nate here."),
    ("Joanna", "Nate, you rock."),
    ("Nate", "Me, Nate? Sure."),
    ("Joanna", "Good night Nate."),
    ("Nate", "Bye Joanna."),
    ("Joanna", "Nate, I finished the second draft of my screenplay last night."),
    ("Nate", "Yes, Nate agrees."),
    ("Joanna", "Nate! Hello!"),
    ("Nate", ANSWER),
    ("Joanna", "Nate, my turtle tank needs cleaning again."),
    ("Nate", "Nate is fine, thanks."),
    ("Joanna", "Oh Nate."),
    ("Nate", "Nate says hi."),
]


class CountingEmbedder:
    """The local embedder, with the texts of every call kept."""

    def __init__(self, inner: LocalOnnxEmbedder) -> None:
        self.inner = inner
        self.calls: list[list[str]] = []

    @property
    def model_id(self) -> str:
        return self.inner.model_id

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    async def start(self) -> None:
        await self.inner.start()

    async def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        return await self.inner.embed(texts)

    async def close(self) -> None:
        await self.inner.close()


async def say(store: SqliteGraphStore, embedder: LocalOnnxEmbedder) -> None:
    items = [
        NewItem(
            text=text,
            source_id=f"d{i}",
            occurred_at=T0 + timedelta(days=i),
            speaker=speaker,
            source_type=SourceType.CHAT_MESSAGE,
        )
        for i, (speaker, text) in enumerate(TURNS)
    ]
    await IngestService(store, embedder, ChangeNotifier()).ingest(IngestCommand(USER, items))


def test_without_names_takes_out_the_speakers_names_only() -> None:
    assert without_names("What console does Nate own?", NAMES) == "What console does own?"
    assert without_names("What might NATE's degree be in?", NAMES) == "What might degree be in?"
    assert without_names("Is Nate\u2019s friend Joanna a writer?", NAMES) == "Is friend a writer?"
    # A name that is not one of the user's speakers stays: it may be what the question is about.
    assert without_names("Who is Anthony?", NAMES) is None
    assert without_names("Does Nate know Anthony?", NAMES) == "Does know Anthony?"
    # Part of a word is not a name; a query of names only has nothing left to search.
    assert without_names("Is Natert a place?", NAMES) is None
    assert without_names("Nate and Joanna?", NAMES) == "and ?"
    assert without_names("Nate, Joanna!", NAMES) is None


def test_vector_cache_keeps_the_most_recently_used() -> None:
    cache = VectorCache(size=2)
    one, two, three = (np.full(3, v, dtype=np.float32) for v in (1.0, 2.0, 3.0))
    cache.put("a", one)
    cache.put("b", two)
    assert cache.get("a") is one  # "a" is now the most recent
    cache.put("c", three)
    assert cache.get("b") is None
    assert cache.get("a") is one and cache.get("c") is three


async def test_channel_lifts_the_turn_about_what_is_asked(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder)
    related = RelatedWords(store, embedder, per_word=0)  # speakers only: no related words
    query = RecallQuery(
        USER, "What console does Nate own?", max_results=20, passages=False, explain=True
    )
    # Only the vector side, so that the ranks below are the two vector searches' doing (the
    # full-text channel matches "Nate" in every turn, neighbours inherit from the greetings).
    vectors_only = {"text_weight": 0.0, "temporal_weight": 0.0, "graph_weight": 0.0}
    off = RecallTuning(vector_weight=1.0, unnamed_weight=0.0, **vectors_only)
    before = await RecallService(store, embedder, off, related=related).recall(query)
    after = await RecallService(
        store, embedder, RecallTuning(**vectors_only), related=related
    ).recall(query)

    def answer(results: list[ScoredMemory]) -> tuple[int, dict[str, int]]:
        place = next(n for n, r in enumerate(results) if r.memory.text == ANSWER)
        return place, {c.channel: c.rank for c in results[place].channels}

    place_before, channels_before = answer(before.results)
    place_after, channels_after = answer(after.results)
    # The query as asked ranks greetings first; without the name, the answer is first.
    assert channels_before["vector"] > 1 and "unnamed" not in channels_before
    assert channels_after["unnamed"] == 1
    assert place_after < place_before


async def test_a_query_naming_no_speaker_is_searched_once(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder)
    counting = CountingEmbedder(embedder)
    related = RelatedWords(store, embedder, per_word=0)
    query = RecallQuery(USER, "Who owns a games console?", max_results=12, passages=False)
    split = await RecallService(store, counting, related=related).recall(query)
    assert counting.calls == [[query.query]]
    whole = RecallTuning(vector_weight=1.0, unnamed_weight=0.0)
    alone = await RecallService(store, embedder, whole, related=related).recall(query)
    assert [(r.memory.id, round(r.score, 6)) for r in split.results] == [
        (r.memory.id, round(r.score, 6)) for r in alone.results
    ]


async def test_one_embedder_call_and_the_unnamed_vector_cached(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder)
    counting = CountingEmbedder(embedder)
    service = RecallService(store, counting, related=RelatedWords(store, embedder, per_word=0))
    query = RecallQuery(USER, "What console does Nate own?", max_results=5)
    first = await service.recall(query)
    assert counting.calls == [["What console does Nate own?", "What console does own?"]]
    # A context stream brings its query's vector: the unnamed one is already known.
    vector = (await embedder.embed([query.query]))[0]
    again = await service.recall(RecallQuery(USER, query.query, max_results=5, query_vector=vector))
    assert len(counting.calls) == 1
    assert [r.memory.id for r in again.results] == [r.memory.id for r in first.results]


async def test_without_unnamed_embeds_the_query_alone(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder)
    counting = CountingEmbedder(embedder)
    tuning = RecallTuning.without_unnamed()
    service = RecallService(store, counting, tuning, related=RelatedWords(store, embedder))
    out = await service.recall(
        RecallQuery(USER, "What console does Nate own?", max_results=5, explain=True)
    )
    assert counting.calls == [["What console does Nate own?"]]
    assert not any(c.channel == "unnamed" for r in out.results for c in r.channels)
    assert tuning.passage_size == 3 and not tuning.passage_own_match
