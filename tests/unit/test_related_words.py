"""Related words (services/related_words.py) and Recall's channel over them, on small hand-made
conversations whose expected words and evidence are known, with the real local embedder.

What is asserted: the words proposed for a query are the user's own (never another user's),
close in meaning to a query word, and neither a form of a query word nor a speaker's name;
the vocabulary follows episodes written after it was read (from the change log, and by reading
it again when the log does not reach back); and in Recall the channel lifts a turn that shares
no word with the query.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import SourceType, UserRef
from persona_server.ports.graph_store import MemoryFilter
from persona_server.services import related_words as related_words_module
from persona_server.services.commands import IngestCommand, NewItem, RecallQuery
from persona_server.services.ingest import IngestService
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.recall import RecallService, RecallTuning
from persona_server.services.related_words import RelatedWords
from persona_server.services.results import ScoredMemory

ANNA = UserRef(tenant="t", user_id="anna")
OTHER = UserRef(tenant="t", user_id="other")
T0 = datetime(2024, 3, 1, 9, tzinfo=UTC)

ANNA_TURNS = [
    ("Tim", "Yesterday I took the kids to the dinosaur museum, they loved the bones."),
    ("Anna", "Families like ours need a quiet Sunday now and then."),
    ("Tim", "Went camping with my parents and my brother last weekend."),
    ("Anna", "I finished a new painting of the harbour at sunset."),
    ("Tim", "The invoice for the garage repair is due on Friday."),
    ("Anna", "My violin lesson got moved to Thursday, so I practised scales tonight."),
    ("Tim", "Work has been busy, lots of meetings about the budget."),
    ("Anna", "The weather was awful, rain all week."),
]
OTHER_TURNS = [
    ("Sam", "I bought a second-hand guitar and learnt three chords."),
    ("Lee", "The train was late again this morning."),
]


async def say(
    store: SqliteGraphStore,
    embedder: LocalOnnxEmbedder,
    user: UserRef,
    turns: list[tuple[str, str]],
    first: int = 0,
) -> None:
    items = [
        NewItem(
            text=text,
            source_id=f"d{first + i}",
            occurred_at=T0 + timedelta(days=first + i),
            speaker=speaker,
            source_type=SourceType.CHAT_MESSAGE,
        )
        for i, (speaker, text) in enumerate(turns)
    ]
    await IngestService(store, embedder, ChangeNotifier()).ingest(IngestCommand(user, items))


async def test_words_are_the_users_own_and_near_in_meaning(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder, ANNA, ANNA_TURNS)
    await say(store, embedder, OTHER, OTHER_TURNS)
    related = RelatedWords(store, embedder)
    anna = await related.for_query(ANNA, "What instruments does Anna play?")
    other = await related.for_query(OTHER, "What instruments does Sam play?")
    assert "violin" in anna and "guitar" not in anna
    assert "guitar" in other and "violin" not in other
    assert "painting" in await related.for_query(ANNA, "What art does Anna make?")


async def test_query_forms_and_speakers_are_left_out(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder, ANNA, ANNA_TURNS)
    words = await RelatedWords(store, embedder).for_query(ANNA, "What does Tim do with his family?")
    assert "parents" in words
    # "families" is a form of "family" (full-text matches it already); names are not topics.
    assert not {"family", "families", "tim", "anna"} & set(words)
    # A query of names and stop words alone has nothing to relate.
    assert await RelatedWords(store, embedder).for_query(ANNA, "What did Tim and Anna do?") == []


async def test_nothing_for_an_unknown_user(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    await say(store, embedder, ANNA, ANNA_TURNS)
    nobody = UserRef(tenant="t", user_id="nobody")
    assert await RelatedWords(store, embedder).for_query(nobody, "What instruments?") == []


@pytest.mark.parametrize("max_changes", [2000, 1])
async def test_vocabulary_follows_later_episodes(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder, max_changes: int
) -> None:
    # max_changes=1: the change log holds more than the refresh reads, so it reads all again.
    await say(store, embedder, ANNA, ANNA_TURNS)
    related = RelatedWords(store, embedder, max_changes=max_changes)
    assert "cello" not in await related.for_query(ANNA, "What instruments does Anna play?")
    later = [("Anna", "Tried a cello at the shop today."), ("Tim", "Nice!")]
    await say(store, embedder, ANNA, later, first=len(ANNA_TURNS))
    assert "cello" in await related.for_query(ANNA, "What instruments does Anna play?")


@pytest.mark.parametrize("max_changes", [2000, 1])
async def test_words_in_too_many_episodes_are_left_out(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder, max_changes: int
) -> None:
    # Full-text costs per row a word matches: the words of one query together may be in at
    # most `max_episodes` of the user's episodes; a common one is skipped, a rarer one kept.
    pianos = [("Anna", f"Piano practice number {n} went well.") for n in range(4)]
    await say(store, embedder, ANNA, ANNA_TURNS + pianos)
    question = "What instruments does Anna play?"
    assert {"violin", "piano"} <= set(await RelatedWords(store, embedder).for_query(ANNA, question))
    related = RelatedWords(store, embedder, max_episodes=3, max_changes=max_changes)
    words = await related.for_query(ANNA, question)
    assert "violin" in words and "piano" not in words
    # Counts follow later episodes (through the change log, or by reading all again): three
    # more violin turns make it too common as well.
    violins = [("Tim", f"Violin concert {n} was lovely.") for n in range(3)]
    await say(store, embedder, ANNA, violins, first=len(ANNA_TURNS) + len(pianos))
    words = await related.for_query(ANNA, question)
    assert "violin" not in words and "piano" not in words


# Filler that the query's words and speaker do not reach, and one turn that answers it with a
# word of its own: "What instruments..." -> "violin".
FILLER = ["We should try {} again soon, that was fun.", "The {} tickets are booked for Saturday."]
GAMES = ["tennis", "chess", "football", "cards"]


async def test_recall_channel_lifts_a_turn_sharing_no_word_with_the_query(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    turns = [
        ("Tim" if i % 2 else "Anna", f.format(g))
        for i, (f, g) in enumerate((f, g) for g in GAMES for f in FILLER)
    ]
    answer = "My violin lesson got moved to Thursday, so I practised scales tonight."
    turns.insert(5, ("Anna", answer))
    await say(store, embedder, ANNA, turns)
    query = RecallQuery(
        ANNA, "What instruments does Anna play?", max_results=20, explain=True, passages=False
    )
    # Both with the user's speakers known (the query without "Anna" is searched too): they
    # differ in the related-words channel only.
    words = RelatedWords(store, embedder)
    without = RecallTuning(related_weight=0.0)
    plain = await RecallService(store, embedder, without, related=words).recall(query)
    related = await RecallService(store, embedder, related=words).recall(query)

    def score(results: list[ScoredMemory]) -> float:
        return next(r.score for r in results if r.memory.text == answer)

    # Only the answer holds a related word ("violin"): it alone has a hit in the channel, and
    # as the channel's best (and only) hit it gains the channel's whole weight.
    with_channel = [r.memory.text for r in related.results if _has(r, "related")]
    assert with_channel == [answer]
    gain = score(related.results) - score(plain.results)
    assert gain >= RecallTuning().related_weight * 0.99
    assert not any(_has(r, "related") for r in plain.results)


def _has(result: ScoredMemory, channel: str) -> bool:
    return any(c.channel == channel for c in result.channels)


async def test_vocabulary_is_bounded(store: SqliteGraphStore, embedder: LocalOnnxEmbedder) -> None:
    # The vocabulary is read in record order (then id): the violin turn is recorded last, so
    # the five words kept come from the turns before it (each has more than five).
    violin = [t for t in ANNA_TURNS if "violin" in t[1]]
    await say(store, embedder, ANNA, [t for t in ANNA_TURNS if t not in violin])
    await say(store, embedder, ANNA, violin, first=len(ANNA_TURNS))
    small = RelatedWords(store, embedder, max_words=5)
    assert "violin" not in await small.for_query(ANNA, "What instruments does Anna play?")
    assert "violin" in await RelatedWords(store, embedder).for_query(ANNA, "What instruments?")


async def test_deleted_text_leaves_the_vocabulary(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    """A deleted episode's words are gone from the next query's vocabulary, and so are a
    deleted user's when the same user id is written again."""
    await say(store, embedder, ANNA, ANNA_TURNS)
    related = RelatedWords(store, embedder)
    query = "What instruments does Anna play?"
    assert "violin" in await related.for_query(ANNA, query)
    page = await store.memories.list_page(ANNA, filter=MemoryFilter(), limit=100, cursor="")
    (violin,) = [m for m in page.memories if "violin" in m.text]
    await store.memories.delete(ANNA, violin.id)
    assert "violin" not in await related.for_query(ANNA, query)

    await store.users.delete(ANNA)
    await say(store, embedder, ANNA, [("Anna", "Tried a cello at the shop today.")])
    assert "cello" in await related.for_query(ANNA, query)
    assert "violin" not in await related.for_query(ANNA, query)
    assert "painting" not in await related.for_query(ANNA, "What art does Anna make?")


async def test_a_slow_first_read_does_not_hold_the_query(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    """Past `wait_s` a query goes on without related words; the read goes on and a later
    query has them."""
    await say(store, embedder, ANNA, ANNA_TURNS)
    related = RelatedWords(store, embedder, wait_s=0.0)
    query = "What instruments does Anna play?"
    assert await related.for_query(ANNA, query) == []
    for _ in range(200):
        await asyncio.sleep(0.01)
        words = await related.for_query(ANNA, query)
        if words:
            break
    assert "violin" in words


async def test_with_a_notifier_a_held_vocabulary_costs_no_store_read(
    store: SqliteGraphStore, embedder: LocalOnnxEmbedder
) -> None:
    """Between local writes a query uses the vocabulary held (no change-log read); a write
    announced by the notifier makes the next query bring it up to date."""
    notifier = ChangeNotifier()
    await say(store, embedder, ANNA, ANNA_TURNS)
    related = RelatedWords(store, embedder, notifier=notifier, recheck_s=3600)
    reads = 0
    latest_seq = store.changes.latest_seq

    async def counted(user: UserRef) -> int:
        nonlocal reads
        reads += 1
        return await latest_seq(user)

    store.changes.latest_seq = counted  # type: ignore[method-assign]
    query = "What instruments does Anna play?"
    assert "violin" in await related.for_query(ANNA, query)
    assert "violin" in await related.for_query(ANNA, query)
    assert reads == 1
    later = [("Anna", "Tried a cello at the shop today.")]
    items = [
        NewItem(
            text=t,
            source_id="late",
            occurred_at=T0,
            speaker=sp,
            source_type=SourceType.CHAT_MESSAGE,
        )
        for sp, t in later
    ]
    await IngestService(store, embedder, notifier).ingest(IngestCommand(ANNA, items))
    assert "cello" in await related.for_query(ANNA, query)
    assert reads == 2


@pytest.mark.parametrize(("terms", "words"), [(1, 5), (4, 1800), (7, 171), (30, 3000)])
def test_blocked_similarities_equal_the_plain_product(terms: int, words: int) -> None:
    rng = np.random.default_rng(terms * words)
    vectors = rng.standard_normal((terms, 384)).astype(np.float32)
    matrix = rng.standard_normal((words, 384)).astype(np.float32)
    got = related_words_module._similarities(vectors, matrix)
    assert got.shape == (terms, words)
    np.testing.assert_allclose(got, vectors @ matrix.T, rtol=1e-5, atol=1e-4)
