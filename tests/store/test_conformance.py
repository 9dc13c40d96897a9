"""Behaviour every `GraphStore` must show, whatever the backend.

Semantics pinned here that the port leaves implicit:
- a memory without occurred_at fails any time-range filter;
- as_of keeps memories recorded by then and valid then (valid_from <= as_of < invalid_at);
- an episode's own provenance is itself (episode_ids == [id], source_ids == [source_id]);
- deleting an entity deletes the facts about it;
- write_derived for an episode that no longer exists writes nothing.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt
import pytest

from persona_server.domain.models import (
    ChangeKind,
    Entity,
    Episode,
    ExtractionState,
    ExtractionStatus,
    Fact,
    MemoryType,
    Psyche,
    UserRef,
)
from persona_server.ports.graph_store import (
    DerivedWrite,
    EmbeddingMismatchError,
    GraphStore,
    InvalidCursorError,
    MemoryFilter,
    Neighbours,
    SearchHit,
    SourceConflictError,
    Usage,
    WriteOutcome,
)

from .conftest import StoreFactory
from .helpers import (
    DIM,
    MODEL,
    T0,
    by_id,
    entity,
    episode,
    fact,
    goal,
    hours,
    near,
    new_user,
    psyche,
    put,
    unit,
    units,
)

NO_FILTER = MemoryFilter()


def ids(hits: list[SearchHit]) -> list[str]:
    return [h.memory_id for h in hits]


# --- ingest and idempotency -------------------------------------------------------------


async def test_put_batch_creates_then_is_idempotent(store: GraphStore, user: UserRef) -> None:
    eps = [episode(f"s{i}", f"text number {i}", hours(i)) for i in range(3)]
    first = await put(store, user, eps)
    assert [r.outcome for r in first] == [WriteOutcome.CREATED] * 3
    assert [r.episode_id for r in first] == [e.id for e in eps]
    assert [r.source_id for r in first] == ["s0", "s1", "s2"]

    again = [episode(f"s{i}", f"text number {i}", hours(i)) for i in range(3)]
    second = await put(store, user, again)
    assert [r.outcome for r in second] == [WriteOutcome.UNCHANGED] * 3
    assert [r.episode_id for r in second] == [e.id for e in eps]
    assert [r.episode for r in second] == [None] * 3
    assert len(await store.episodes.chain(user)) == 3

    got = await store.memories.get_many(user, [eps[1].id])
    ep = got[eps[1].id]
    assert isinstance(ep, Episode)
    # a result carries the version written, as a read gives it back
    written = first[1].episode
    assert written is not None
    assert (written.id, written.seq, written.text) == (ep.id, ep.seq, ep.text)
    assert written.extraction.state is ep.extraction.state
    assert ep.text == "text number 1"
    assert ep.source_ids == ["s1"]
    assert ep.episode_ids == [eps[1].id]
    assert ep.extraction.state is ExtractionState.PENDING


async def test_episode_round_trips_its_fields(store: GraphStore, user: UserRef) -> None:
    ep = episode(
        "chat-1",
        "I moved to Lisbon",
        hours(3),
        speaker="Ana",
        summary="relocation",
        metadata={"channel": "chat", "lang": "en"},
    )
    await put(store, user, [ep])
    got = (await store.memories.get_many(user, [ep.id]))[ep.id]
    assert isinstance(got, Episode)
    assert got.speaker == "Ana"
    assert got.summary == "relocation"
    assert got.metadata == {"channel": "chat", "lang": "en"}
    assert got.occurred_at == hours(3)
    assert got.seq >= 1


async def test_conflict_rejects_whole_batch(store: GraphStore, user: UserRef) -> None:
    original = episode("a", "the original text")
    await put(store, user, [original])
    seq_before = await store.changes.latest_seq(user)

    fresh = episode("b", "a brand new one")
    clash = episode("a", "different text for a")
    with pytest.raises(SourceConflictError) as info:
        await put(store, user, [fresh, clash])
    assert info.value.source_ids == ["a"]

    assert await store.episodes.chain(user) == [original.id]
    assert await store.memories.get_many(user, [fresh.id]) == {}
    got = (await store.memories.get_many(user, [original.id]))[original.id]
    assert got.text == "the original text"
    assert await store.changes.latest_seq(user) == seq_before
    assert await store.search.text(user, "brand", 5, NO_FILTER) == []


async def test_conflict_on_new_user_leaves_no_user(store: GraphStore) -> None:
    user = new_user()
    with pytest.raises(SourceConflictError):
        await put(store, user, [episode("x", "one"), episode("x", "two")])
    assert not await store.users.exists(user)


async def test_replace_keeps_id_and_swaps_text(store: GraphStore, user: UserRef) -> None:
    ep = episode("a", "I adore zucchini soup", hours(1))
    await put(store, user, [ep])
    await store.episodes.set_extraction(
        user, ep.id, ExtractionStatus(state=ExtractionState.DONE, attempts=2)
    )
    new_vec = unit(99).reshape(1, -1)
    replacement = episode("a", "I now prefer pumpkin risotto", hours(2))
    res = await put(store, user, [replacement], replace=True, vectors=new_vec)
    assert res[0].outcome is WriteOutcome.REPLACED
    assert res[0].episode_id == ep.id

    got = (await store.memories.get_many(user, [ep.id]))[ep.id]
    assert isinstance(got, Episode)
    assert got.text == "I now prefer pumpkin risotto"
    assert got.occurred_at == hours(2)
    assert got.extraction.state is ExtractionState.PENDING
    assert got.extraction.attempts == 0
    written = res[0].episode
    assert written is not None
    assert (written.id, written.seq, written.text) == (ep.id, got.seq, got.text)
    assert ids(await store.search.text(user, "pumpkin", 5, NO_FILTER)) == [ep.id]
    assert await store.search.text(user, "zucchini", 5, NO_FILTER) == []
    hits = await store.search.vector(user, new_vec, 1, NO_FILTER)
    assert ids(hits) == [ep.id]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)

    same = await put(store, user, [episode("a", "I now prefer pumpkin risotto")], replace=True)
    assert same[0].outcome is WriteOutcome.UNCHANGED


async def test_replace_removes_memories_derived_only_from_it(
    store: GraphStore, user: UserRef
) -> None:
    a, b = episode("a", "Met Dr. Lee today", hours(1)), episode("b", "Lee again", hours(2))
    await put(store, user, [a, b])
    lee = entity("Dr. Lee")
    pref = psyche("likes tea", key="tea")
    await store.memories.write_derived(
        user, DerivedWrite(a.id, [lee, pref], by_id([lee, pref], units(2)), mentions=[lee.id])
    )
    await store.memories.write_derived(user, DerivedWrite(b.id, [lee], {}, mentions=[lee.id]))

    await put(store, user, [episode("a", "Met nobody today", hours(1))], replace=True)
    got = await store.memories.get_many(user, [lee.id, pref.id])
    assert pref.id not in got
    assert got[lee.id].episode_ids == [b.id]
    assert got[lee.id].source_ids == ["b"]


async def test_replace_within_one_batch(store: GraphStore, user: UserRef) -> None:
    res = await put(store, user, [episode("x", "one"), episode("x", "two")], replace=True)
    assert [r.outcome for r in res] == [WriteOutcome.CREATED, WriteOutcome.REPLACED]
    assert res[0].episode_id == res[1].episode_id
    got = await store.memories.get_many(user, [res[0].episode_id])
    assert got[res[0].episode_id].text == "two"
    assert len(await store.episodes.chain(user)) == 1


async def test_rejects_vectors_of_wrong_shape(store: GraphStore, user: UserRef) -> None:
    with pytest.raises(ValueError):
        await store.episodes.put_batch(
            user, [episode("a", "x")], np.zeros((1, DIM + 1), np.float32), replace=False
        )
    with pytest.raises(ValueError):
        await store.episodes.put_batch(
            user, [episode("a", "x"), episode("b", "y")], units(1), replace=False
        )
    assert not await store.users.exists(user)


# --- the temporal chain -----------------------------------------------------------------


async def test_chain_is_in_event_time_under_backfill(store: GraphStore, user: UserRef) -> None:
    e10, e20, e30 = (episode(f"s{h}", f"at {h}", hours(h)) for h in (10, 20, 30))
    await put(store, user, [e20, e10])
    await put(store, user, [e30])
    e15, e5 = episode("s15", "at 15", hours(15)), episode("s5", "at 5", hours(5))
    await put(store, user, [e15])
    await put(store, user, [e5])
    assert await store.episodes.chain(user) == [e5.id, e10.id, e15.id, e20.id, e30.id]

    n = await store.episodes.chain_neighbours(user, [e15.id, e5.id, e30.id])
    assert n[e15.id] == [e10.id, e20.id]
    assert n[e5.id] == [e10.id]
    assert n[e30.id] == [e20.id]
    wide = await store.episodes.chain_neighbours(user, [e15.id], before=2, after=5)
    assert wide[e15.id] == [e5.id, e10.id, e20.id, e30.id]


async def test_chain_neighbours_windows(store: GraphStore, user: UserRef) -> None:
    """Every window size gives the chain slice around each episode, narrow or past the ends,
    including windows wider than a store may walk in one statement."""
    eps = [episode(f"w{i}", f"walk {i}", hours(i)) for i in range(24)]
    await put(store, user, eps)
    chain = await store.episodes.chain(user)
    assert chain == [e.id for e in eps]
    seeds = [chain[0], chain[5], chain[12], chain[23]]
    for before, after in ((0, 0), (0, 3), (2, 0), (3, 7), (8, 8), (9, 2), (11, 14)):
        got = await store.episodes.chain_neighbours(user, seeds, before=before, after=after)
        for seed in seeds:
            i = chain.index(seed)
            expected = chain[max(i - before, 0) : i] + chain[i + 1 : i + 1 + after]
            assert got.get(seed, []) == expected, (before, after, seed)


async def test_equal_occurred_at_keeps_ingest_order(store: GraphStore, user: UserRef) -> None:
    first = [episode(f"a{i}", f"first {i}", T0) for i in range(3)]
    second = [episode(f"b{i}", f"second {i}", T0) for i in range(2)]
    earlier = episode("z", "earlier", T0 - timedelta(seconds=1))
    await put(store, user, first)
    await put(store, user, [*second, earlier])
    expected = [earlier.id, *(e.id for e in first), *(e.id for e in second)]
    assert await store.episodes.chain(user) == expected
    n = await store.episodes.chain_neighbours(user, [first[2].id])
    assert n[first[2].id] == [first[1].id, second[0].id]


async def test_texts_page_through_episodes_in_ingest_order(
    store: GraphStore, user: UserRef
) -> None:
    # Ingest order, not event time: a back-filled episode comes after those ingested first.
    first = [
        episode("t1", "Piano at noon", hours(5), speaker="Ann"),
        episode("t2", "Tea", hours(6)),
    ]
    later = episode("t0", "Back-filled walk", hours(1), speaker="Bo")
    await put(store, user, first)
    await put(store, user, [later])
    await put(store, user, [episode("t2", "Green tea", hours(6))], replace=True)
    liking = psyche("likes piano", key="piano")
    await store.memories.write_derived(
        user, DerivedWrite(first[0].id, [liking], by_id([liking], units(1)))
    )
    other = UserRef(tenant=user.tenant, user_id=user.user_id + "-other")
    await put(store, other, [episode("o", "Someone else's words", speaker="Cy")])

    every = await store.episodes.texts(user, after_seq=0, limit=10)
    said = [(t.speaker, t.text) for t in every]
    assert said == [("Ann", "Piano at noon"), ("", "Green tea"), ("Bo", "Back-filled walk")]
    seqs = [t.seq for t in every]
    assert seqs == sorted(seqs) and len(set(seqs)) == 3
    one = await store.episodes.texts(user, after_seq=0, limit=1)
    rest = await store.episodes.texts(user, after_seq=one[-1].seq, limit=10)
    assert one + rest == every
    assert await store.episodes.texts(user, after_seq=seqs[-1], limit=10) == []
    assert await store.episodes.texts(user, after_seq=0, limit=0) == []
    unknown = UserRef(tenant=user.tenant, user_id="nobody-here")
    assert await store.episodes.texts(unknown, after_seq=0, limit=10) == []


async def test_concurrent_ingest_keeps_a_total_chain(store: GraphStore, user: UserRef) -> None:
    batches = [[episode(f"c{b}-{i}", f"c {b} {i}", T0) for i in range(5)] for b in range(6)]
    await asyncio.gather(*(put(store, user, batch) for batch in batches))
    chain = await store.episodes.chain(user)
    assert len(chain) == 30
    got = await store.memories.get_many(user, chain)
    seqs = [m.seq for m in (got[i] for i in chain) if isinstance(m, Episode)]
    assert seqs == sorted(seqs) and len(set(seqs)) == 30
    for batch in batches:  # a batch is one transaction, so it stays contiguous
        positions = [chain.index(e.id) for e in batch]
        assert positions == list(range(positions[0], positions[0] + 5))


async def test_delete_relinks_chain(store: GraphStore, user: UserRef) -> None:
    eps = [episode(f"s{i}", f"e {i}", hours(i)) for i in range(3)]
    await put(store, user, eps)
    assert await store.memories.delete(user, eps[1].id) == [eps[1].id]
    assert await store.episodes.chain(user) == [eps[0].id, eps[2].id]
    n = await store.episodes.chain_neighbours(user, [eps[0].id])
    assert n[eps[0].id] == [eps[2].id]


# --- vector and text search with filters ------------------------------------------------


@dataclass
class FilterWorld:
    target: npt.NDArray[np.float32]
    eps: list[Episode]
    bob: Entity
    old: Fact
    new: Fact


async def _filter_world(store: GraphStore, user: UserRef) -> FilterWorld:
    """Episodes and derived memories that all sit near one query vector."""
    target = unit(7)
    eps = [
        episode("e1", "hiking in the alps", hours(1), metadata={"channel": "chat"}),
        episode("e2", "hiking near the lake", hours(5), metadata={"channel": "email"}),
        episode("e3", "hiking with Bob", hours(9), metadata={"channel": "chat", "x": "1"}),
    ]
    vecs = np.stack([near(target, 0.1)[0] for _ in eps])
    await put(store, user, eps, vectors=vecs)
    bob = entity("Bob", text="Bob, hiking buddy")
    old = fact(bob, "lives_in", text="Bob hiking base is Bern", valid_from=hours(0))
    new = fact(bob, "lives_in", text="Bob hiking base is Basel", valid_from=hours(8))
    await store.memories.write_derived(
        user,
        DerivedWrite(
            eps[2].id,
            [bob, old, new],
            by_id([bob, old, new], np.stack([near(target, 0.1)[0] for _ in range(3)])),
            mentions=[bob.id],
            invalidate=[(old.id, hours(8))],
        ),
    )
    return FilterWorld(target, eps, bob, old, new)


@pytest.mark.parametrize("channel", ["vector", "text"])
async def test_search_filters(store: GraphStore, user: UserRef, channel: str) -> None:
    w = await _filter_world(store, user)
    eps, bob, old, new = w.eps, w.bob, w.old, w.new

    async def search(flt: MemoryFilter) -> set[str]:
        if channel == "vector":
            hits = await store.search.vector(user, w.target.reshape(1, -1), 50, flt)
        else:
            hits = await store.search.text(user, "hiking", 50, flt)
        assert all(isinstance(h.score, float) for h in hits)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        return set(ids(hits))

    every = {e.id for e in eps} | {bob.id, new.id}
    assert await search(NO_FILTER) == every
    assert await search(MemoryFilter(types=frozenset({MemoryType.EPISODE}))) == {e.id for e in eps}
    assert await search(MemoryFilter(types=frozenset({MemoryType.FACT}))) == {new.id}
    # time range on occurred_at: [from, to); memories without occurred_at are out
    assert await search(MemoryFilter(occurred_from=hours(1), occurred_to=hours(9))) == {
        eps[0].id,
        eps[1].id,
    }
    assert await search(MemoryFilter(occurred_from=hours(2))) == {eps[1].id, eps[2].id}
    assert await search(MemoryFilter(metadata={"channel": "chat"})) == {eps[0].id, eps[2].id}
    assert await search(MemoryFilter(metadata={"channel": "chat", "x": "1"})) == {eps[2].id}
    assert await search(MemoryFilter(metadata={"channel": "fax"})) == set()
    # invalidated facts: hidden by default, back with history, as_of picks what held then
    assert await search(MemoryFilter(include_invalidated=True)) == every | {old.id}
    then = MemoryFilter(types=frozenset({MemoryType.FACT}), as_of=hours(4))
    assert await search(then) == {old.id}
    later = MemoryFilter(types=frozenset({MemoryType.FACT}), as_of=hours(8))
    assert await search(later) == {new.id}


async def test_selective_filter_among_many_matches(store: GraphStore, user: UserRef) -> None:
    eps = [
        episode(f"s{i}", f"coffee with friend {i}", metadata={"rare": "yes"} if i % 40 == 7 else {})
        for i in range(120)
    ]
    await put(store, user, eps)
    flt = MemoryFilter(metadata={"rare": "yes"})
    want = {eps[i].id for i in (7, 47, 87)}
    assert set(ids(await store.search.text(user, "coffee", 5, flt))) == want
    assert len(await store.search.text(user, "coffee", 5, NO_FILTER)) == 5
    assert len(await store.search.text(user, "coffee", 500, NO_FILTER)) == 120


async def test_as_of_excludes_what_was_recorded_later(store: GraphStore, user: UserRef) -> None:
    ep = episode("a", "recorded late", hours(1), recorded_at=hours(10))
    v = unit(3).reshape(1, -1)
    await put(store, user, [ep], vectors=v)
    assert await store.search.vector(user, v, 5, MemoryFilter(as_of=hours(5))) == []
    assert ids(await store.search.vector(user, v, 5, MemoryFilter(as_of=hours(11)))) == [ep.id]
    assert await store.search.text(user, "late", 5, MemoryFilter(as_of=hours(5))) == []


async def test_vector_search_ranks_by_cosine(store: GraphStore, user: UserRef) -> None:
    eps = [episode(f"s{i}", f"t{i}") for i in range(50)]
    vecs = units(50)
    await put(store, user, eps, vectors=vecs)
    q = near(vecs[17], 0.01)
    hits = await store.search.vector(user, q, 5, NO_FILTER)
    assert hits[0].memory_id == eps[17].id
    expected = np.argsort(-(vecs @ q[0]))[:5]
    assert ids(hits) == [eps[i].id for i in expected]
    assert len(await store.search.vector(user, q, 500, NO_FILTER)) == 50
    assert await store.search.vector(new_user(), q, 5, NO_FILTER) == []


async def test_vector_search_sees_writes_and_deletes(store: GraphStore, user: UserRef) -> None:
    a = episode("a", "first")
    va = unit(1).reshape(1, -1)
    await put(store, user, [a], vectors=va)
    assert ids(await store.search.vector(user, va, 1, NO_FILTER)) == [a.id]  # now cached
    b = episode("b", "second")
    vb = unit(2).reshape(1, -1)
    await put(store, user, [b], vectors=vb)
    assert ids(await store.search.vector(user, vb, 1, NO_FILTER)) == [b.id]
    await store.memories.delete(user, b.id)
    assert ids(await store.search.vector(user, vb, 5, NO_FILTER)) == [a.id]


async def test_text_search_ranks_and_stems(store: GraphStore, user: UserRef) -> None:
    eps = [
        episode("a", "We went running by the river"),
        episode("b", "The river was cold and the river was wide"),
        episode("c", "Bought groceries"),
    ]
    await put(store, user, eps)
    hits = await store.search.text(user, "river", 5, NO_FILTER)
    assert ids(hits) == [eps[1].id, eps[0].id]
    assert ids(await store.search.text(user, "runs", 5, NO_FILTER)) == [eps[0].id]
    assert ids(await store.search.text(user, "what about the groceries?", 5, NO_FILTER)) == [
        eps[2].id
    ]
    assert await store.search.text(user, "", 5, NO_FILTER) == []
    assert await store.search.text(user, "!!! ???", 5, NO_FILTER) == []


@pytest.mark.parametrize(
    "query",
    [
        '"unbalanced',
        "river OR",
        "NOT river",
        "river AND NOT cold",
        "NEAR(river cold)",
        "text: river",
        "owner: u1",
        "{text owner}: river",
        "riv*",
        "^river",
        "river + cold - wide",
        "'; DROP TABLE memories; --",
        "(((",
        "col:",
        "\x00 river",
    ],
)
async def test_text_search_never_parses_user_syntax(
    store: GraphStore, user: UserRef, query: str
) -> None:
    await put(store, user, [episode("a", "the river was cold")])
    hits = await store.search.text(user, query, 5, NO_FILTER)
    assert all(h.memory_id for h in hits)
    assert len(await store.episodes.chain(user)) == 1


# --- derived memories, graph expansion, lookups -----------------------------------------


@dataclass
class Graph:
    e1: Episode
    e2: Episode
    ana: Entity
    cafe: Entity
    acme: Entity
    works: Fact
    likes: Psyche


async def _graph(store: GraphStore, user: UserRef) -> Graph:
    e1 = episode("e1", "Lunch with Ana at Cafe Luz", hours(1))
    e2 = episode("e2", "Ana started at Acme", hours(2))
    await put(store, user, [e1, e2])
    ana = entity("Ana Silva", aliases=["Ana", "A. Silva"], kind="person")
    cafe = entity("Café Luz", kind="place")
    acme = entity("Acme Corp.", kind="organization")
    works = fact(ana, "works_at", acme)
    likes = psyche("likes long lunches", key="lunch")
    await store.memories.write_derived(
        user,
        DerivedWrite(
            e1.id,
            [ana, cafe, likes],
            by_id([ana, cafe, likes], units(3)),
            mentions=[ana.id, cafe.id],
            extraction=ExtractionStatus(state=ExtractionState.DONE, attempts=1),
        ),
    )
    await store.memories.write_derived(
        user,
        DerivedWrite(
            e2.id,
            [ana, acme, works],
            by_id([ana, acme, works], units(3)),
            mentions=[ana.id, acme.id],
        ),
    )
    return Graph(e1, e2, ana, cafe, acme, works, likes)


async def test_write_derived_and_provenance(store: GraphStore, user: UserRef) -> None:
    g = await _graph(store, user)
    e1, e2, ana, works = g.e1, g.e2, g.ana, g.works
    got = await store.memories.get_many(user, [ana.id, works.id, e1.id])
    assert got[ana.id].episode_ids == [e1.id, e2.id]
    assert got[ana.id].source_ids == ["e1", "e2"]
    got_ana = got[ana.id]
    assert isinstance(got_ana, Entity)
    assert got_ana.aliases == ["Ana", "A. Silva"]
    assert got[works.id].source_ids == ["e2"]
    assert isinstance(got[works.id], Fact)
    ep1 = got[e1.id]
    assert isinstance(ep1, Episode)
    assert ep1.extraction.state is ExtractionState.DONE


async def test_expand_follows_mentions_facts_and_provenance(
    store: GraphStore, user: UserRef
) -> None:
    g = await _graph(store, user)
    e1, e2, ana, cafe, acme, works, likes = (g.e1, g.e2, g.ana, g.cafe, g.acme, g.works, g.likes)
    out = await store.search.expand(
        user,
        [e1.id, ana.id, works.id, likes.id, "missing"],
        10,
    )
    assert set(out[e1.id]) == {ana.id, cafe.id, likes.id}
    assert set(out[ana.id]) == {works.id, e1.id, e2.id}
    assert set(out[works.id]) == {ana.id, acme.id, e2.id}
    assert out[likes.id] == [e1.id]
    assert out.get("missing", []) == []
    limited = await store.search.expand(user, [ana.id], 1)
    assert len(limited[ana.id]) == 1


async def test_around_reads_neighbours_then_what_was_chosen(
    store: GraphStore, user: UserRef
) -> None:
    """`around` = expand + chain_neighbours, then get_many of what `choose` picks from them."""
    g = await _graph(store, user)
    seen: list[Neighbours] = []

    def choose(found: Neighbours) -> list[str]:
        seen.append(found)
        # every graph neighbour of the fact, the chain neighbour of e1, and one unknown id
        return [*found.graph[g.works.id], *found.chain[g.e1.id], "missing"]

    found, memories = await store.search.around(
        user,
        graph_seeds=[g.works.id, g.likes.id],
        graph_limit=10,
        episode_seeds=[g.e1.id],
        before=1,
        after=1,
        choose=choose,
    )
    assert seen and seen[-1] == found
    assert found.graph == await store.search.expand(user, [g.works.id, g.likes.id], 10)
    assert found.chain == await store.episodes.chain_neighbours(user, [g.e1.id])
    assert found.chain[g.e1.id] == [g.e2.id]
    assert set(memories) == {g.ana.id, g.acme.id, g.e2.id}
    assert memories[g.e2.id].text == g.e2.text

    # a window wider than a store may walk in one statement gives the same answer
    wide, _ = await store.search.around(
        user,
        graph_seeds=[g.works.id],
        graph_limit=10,
        episode_seeds=[g.e1.id, g.e2.id],
        before=10,
        after=12,
        choose=lambda _: [],
    )
    assert wide.graph == {g.works.id: found.graph[g.works.id]}
    assert wide.chain == await store.episodes.chain_neighbours(
        user, [g.e1.id, g.e2.id], before=10, after=12
    )

    # nothing to expand: still one fetch of what is chosen; another user sees nothing
    found, memories = await store.search.around(
        user,
        graph_seeds=[],
        graph_limit=10,
        episode_seeds=[],
        before=2,
        after=2,
        choose=lambda _: [g.e1.id],
    )
    assert found == Neighbours(graph={}, chain={})
    assert list(memories) == [g.e1.id]
    other = new_user("someone-else")
    found, memories = await store.search.around(
        other,
        graph_seeds=[g.works.id],
        graph_limit=10,
        episode_seeds=[g.e1.id],
        before=1,
        after=1,
        choose=lambda f: [g.e1.id, *f.graph.get(g.works.id, [])],
    )
    assert found.graph.get(g.works.id, []) == [] and found.chain.get(g.e1.id, []) == []
    assert memories == {}


async def test_find_entities_by_normalised_name_or_alias(store: GraphStore, user: UserRef) -> None:
    g = await _graph(store, user)
    ana, cafe, acme = g.ana, g.cafe, g.acme
    found = await store.memories.find_entities(user, ["ana"])
    assert [e.id for e in found] == [ana.id]
    found = await store.memories.find_entities(user, ["a silva", "cafe luz", "nobody"])
    assert {e.id for e in found} == {ana.id, cafe.id}
    found = await store.memories.find_entities(user, ["acme corp"])
    assert [e.id for e in found] == [acme.id]
    assert await store.memories.find_entities(new_user(), ["ana"]) == []


async def test_find_by_key(store: GraphStore, user: UserRef) -> None:
    g = await _graph(store, user)
    likes, works, ana = g.likes, g.works, g.ana
    ps = await store.memories.find_by_key(user, MemoryType.PSYCHE, ["lunch", "other"])
    assert [m.id for m in ps] == [likes.id]
    fa = await store.memories.find_by_key(user, MemoryType.FACT, [f"{ana.id}|works_at"])
    assert [m.id for m in fa] == [works.id]
    gl = goal("run a marathon", key="marathon")
    await store.memories.write_derived(user, DerivedWrite(g.e1.id, [gl], {}))
    assert [
        m.id for m in await store.memories.find_by_key(user, MemoryType.GOAL, ["marathon"])
    ] == [gl.id]


async def test_write_derived_updates_in_place(store: GraphStore, user: UserRef) -> None:
    e = episode("e", "I like tea")
    await put(store, user, [e])
    p = psyche("likes tea", key="tea")
    v = unit(5).reshape(1, -1)
    await store.memories.write_derived(user, DerivedWrite(e.id, [p], by_id([p], v)))
    p2 = p.model_copy(update={"text": "really likes green tea", "mention_count": 2})
    await store.memories.write_derived(user, DerivedWrite(e.id, [p2], {}))
    got = (await store.memories.get_many(user, [p.id]))[p.id]
    assert isinstance(got, Psyche)
    assert got.text == "really likes green tea" and got.mention_count == 2
    assert ids(await store.search.vector(user, v, 1, NO_FILTER)) == [p.id]  # vector kept
    assert ids(await store.search.text(user, "green", 5, NO_FILTER)) == [p.id]
    with pytest.raises(ValueError):
        bad = entity("x").model_copy(update={"id": p.id})
        await store.memories.write_derived(user, DerivedWrite(e.id, [bad], {}))


async def test_write_derived_for_deleted_episode_is_dropped(
    store: GraphStore, user: UserRef
) -> None:
    e = episode("e", "gone soon")
    await put(store, user, [e])
    await store.memories.delete(user, e.id)
    p = psyche("orphan")
    await store.memories.write_derived(user, DerivedWrite(e.id, [p], by_id([p], units(1))))
    assert await store.memories.get_many(user, [p.id]) == {}


# --- listing ----------------------------------------------------------------------------


async def test_list_paginates_without_gaps_or_duplicates(store: GraphStore, user: UserRef) -> None:
    # Several memories share a record time, so the id tie-break matters.
    eps = [episode(f"s{i}", f"memory {i}", hours(i), recorded_at=hours(i // 4)) for i in range(23)]
    await put(store, user, eps)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = await store.memories.list_page(user, filter=NO_FILTER, limit=5, cursor=cursor)
        pages += 1
        seen.extend(m.id for m in page.memories)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert pages == 5
    assert len(seen) == len(set(seen)) == 23
    expected = sorted(eps, key=lambda e: (e.recorded_at, e.id))
    assert seen == [e.id for e in expected]

    exact = await store.memories.list_page(user, filter=NO_FILTER, limit=23, cursor="")
    assert len(exact.memories) == 23 and exact.next_cursor == ""
    chat = await store.memories.list_page(
        user, filter=MemoryFilter(occurred_from=hours(20)), limit=10, cursor=""
    )
    assert [m.id for m in chat.memories] == [
        e.id for e in expected if e.occurred_at and e.occurred_at >= hours(20)
    ]


async def test_list_survives_writes_between_pages(store: GraphStore, user: UserRef) -> None:
    eps = [episode(f"s{i}", f"m {i}", recorded_at=hours(i)) for i in range(6)]
    await put(store, user, eps)
    page = await store.memories.list_page(user, filter=NO_FILTER, limit=3, cursor="")
    await store.memories.delete(user, eps[3].id)
    await put(store, user, [episode("late", "late", recorded_at=hours(100))])
    rest = await store.memories.list_page(user, filter=NO_FILTER, limit=10, cursor=page.next_cursor)
    assert [m.id for m in page.memories] == [e.id for e in eps[:3]]
    assert [m.text for m in rest.memories] == ["m 4", "m 5", "late"]


@pytest.mark.parametrize("cursor", ["garbage", "eyJhIjoxfQ", "W10", "!!!!", "AAAA", "é"])
async def test_list_rejects_bad_cursor(store: GraphStore, user: UserRef, cursor: str) -> None:
    await put(store, user, [episode("a", "x")])
    with pytest.raises(InvalidCursorError):
        await store.memories.list_page(user, filter=NO_FILTER, limit=5, cursor=cursor)
    assert issubclass(InvalidCursorError, ValueError)


# --- deletion ---------------------------------------------------------------------------


async def test_delete_episode_cascades(store: GraphStore, user: UserRef) -> None:
    g = await _graph(store, user)
    e1, e2, ana, cafe, likes, works, acme = (g.e1, g.e2, g.ana, g.cafe, g.likes, g.works, g.acme)
    deleted = await store.memories.delete(user, e1.id)
    assert deleted[0] == e1.id
    assert set(deleted) == {e1.id, cafe.id, likes.id}
    left = await store.memories.get_many(user, [ana.id, works.id, acme.id, cafe.id, likes.id])
    assert set(left) == {ana.id, works.id, acme.id}
    assert left[ana.id].episode_ids == [e2.id]
    assert await store.search.text(user, "lunches", 5, NO_FILTER) == []
    out = await store.search.expand(user, [ana.id], 10)
    assert e1.id not in out[ana.id]
    assert await store.memories.delete(user, e1.id) == []


async def test_delete_entity_takes_its_facts(store: GraphStore, user: UserRef) -> None:
    g = await _graph(store, user)
    acme, works = g.acme, g.works
    deleted = await store.memories.delete(user, acme.id)
    assert deleted == [acme.id, works.id]


async def test_extraction_lease_is_held_by_one_owner_at_a_time(
    store: GraphStore, user: UserRef
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = now + timedelta(minutes=5)
    users = store.users
    assert not await users.lease_extraction(user, "a", now, later)  # no such user yet
    await put(store, user, [episode("l", "leased")])
    assert await users.lease_extraction(user, "a", now, later)
    assert not await users.lease_extraction(user, "b", now, later)
    assert await users.lease_extraction(user, "a", now, later + timedelta(minutes=1))  # renew
    # another user's lease is another lease
    other = UserRef(tenant=user.tenant, user_id="other")
    await put(store, other, [episode("o", "other")])
    assert await users.lease_extraction(other, "b", now, later)
    # run out: anyone may take it
    expired = later + timedelta(minutes=2)
    assert await users.lease_extraction(user, "b", expired, expired + timedelta(minutes=5))
    assert not await users.lease_extraction(user, "a", expired, expired)
    # only the holder releases it
    await users.release_extraction(user, "a")
    assert not await users.lease_extraction(user, "c", now, later)
    await users.release_extraction(user, "b")
    assert await users.lease_extraction(user, "c", now, later)
    # taken by many at once: exactly one wins
    await users.release_extraction(user, "c")
    won = await asyncio.gather(
        *(users.lease_extraction(user, f"w{i}", now, later) for i in range(6))
    )
    assert sum(won) == 1
    # deleting the user drops the lease with it
    await users.delete(user)
    await put(store, user, [episode("l", "leased")])
    assert await users.lease_extraction(user, "z", now, later)


async def test_delete_user_removes_everything(store: GraphStore, user: UserRef) -> None:
    other = UserRef(tenant=user.tenant, user_id="bob")
    await _graph(store, user)
    await put(store, other, [episode("o", "other user's lunch")])
    v = unit(11).reshape(1, -1)
    await put(store, user, [episode("v", "vector one")], vectors=v)
    assert await store.search.vector(user, v, 1, NO_FILTER)  # cache the matrix

    assert await store.users.delete(user) == 8
    assert not await store.users.exists(user)
    assert await store.episodes.chain(user) == []
    assert await store.search.vector(user, v, 5, NO_FILTER) == []
    assert await store.search.text(user, "lunch", 5, NO_FILTER) == []
    assert (
        await store.memories.list_page(user, filter=NO_FILTER, limit=50, cursor="")
    ).memories == []
    assert await store.changes.latest_seq(user) == 0
    assert await store.changes.since(user, 0, 100) == []
    assert await store.memories.find_entities(user, ["ana"]) == []
    assert await store.users.delete(user) == 0
    # the other user is untouched
    assert len(await store.search.text(other, "lunch", 5, NO_FILTER)) == 1
    # and the user can come back as new
    res = await put(store, user, [episode("e1", "fresh start")])
    assert res[0].outcome is WriteOutcome.CREATED


# --- tenancy ----------------------------------------------------------------------------


async def test_tenants_are_isolated(store: GraphStore) -> None:
    a = new_user("same-user")
    b = new_user("same-user")
    v = unit(21).reshape(1, -1)
    ea, eb = episode("src", "secret of tenant a"), episode("src", "secret of tenant b")
    ra = await put(store, a, [ea], vectors=v)
    rb = await put(store, b, [eb], vectors=v)
    assert ra[0].outcome is rb[0].outcome is WriteOutcome.CREATED
    ga, gb = await _graph(store, a), await _graph(store, b)

    assert ids(await store.search.vector(a, v, 1, NO_FILTER)) == [ea.id]
    assert ids(await store.search.text(a, "secret", 5, NO_FILTER)) == [ea.id]
    assert await store.memories.get_many(a, [eb.id, gb.ana.id]) == {}
    assert await store.memories.delete(a, eb.id) == []
    assert (await store.search.expand(a, [gb.ana.id], 10)).get(gb.ana.id, []) == []
    assert (await store.episodes.chain_neighbours(a, [eb.id])).get(eb.id, []) == []
    assert eb.id not in await store.episodes.chain(a)
    found = await store.memories.find_entities(a, ["ana"])
    assert [e.id for e in found] == [ga.ana.id]
    listed = await store.memories.list_page(a, filter=NO_FILTER, limit=100, cursor="")
    assert eb.id not in {m.id for m in listed.memories}
    assert {c.memory_id for c in await store.changes.since(a, 0, 1000)}.isdisjoint(
        {c.memory_id for c in await store.changes.since(b, 0, 1000)}
    )
    await store.users.delete(a)
    assert ids(await store.search.text(b, "secret", 5, NO_FILTER)) == [eb.id]
    assert await store.users.exists(b)


# --- change log -------------------------------------------------------------------------


async def test_change_log_records_every_change_in_order(store: GraphStore, user: UserRef) -> None:
    assert await store.changes.latest_seq(user) == 0
    e1, e2 = episode("a", "one"), episode("b", "two")
    await put(store, user, [e1, e2])
    await put(store, user, [episode("a", "one")])  # unchanged: no entry
    bob = entity("Bob")
    old = fact(bob, "likes", text="Bob likes jazz")
    await store.memories.write_derived(
        user, DerivedWrite(e1.id, [bob, old], by_id([bob, old], units(2)))
    )
    new = fact(bob, "likes", text="Bob likes blues")
    await store.memories.write_derived(
        user, DerivedWrite(e2.id, [new], by_id([new], units(1)), invalidate=[(old.id, hours(1))])
    )
    await store.memories.delete(user, e2.id)
    await put(store, user, [episode("a", "one, edited")], replace=True)

    changes = await store.changes.since(user, 0, 100)
    got = [(c.kind, c.memory_id) for c in changes]
    assert [c.seq for c in changes] == list(range(1, len(changes) + 1))
    assert await store.changes.latest_seq(user) == len(changes)
    assert changes[0].memory_type is MemoryType.EPISODE
    assert all(c.at.tzinfo is not None for c in changes)
    # One group per transaction, in commit order; order inside a transaction is the store's.
    groups = [
        {(ChangeKind.ADDED, e1.id), (ChangeKind.ADDED, e2.id)},
        {(ChangeKind.ADDED, bob.id), (ChangeKind.ADDED, old.id)},
        {(ChangeKind.ADDED, new.id), (ChangeKind.INVALIDATED, old.id)},
        # deleting e2 also deletes `new`, derived only from it
        {(ChangeKind.DELETED, e2.id), (ChangeKind.DELETED, new.id)},
        # replacing e1 deletes bob and the fact about him, both derived only from e1
        {(ChangeKind.UPDATED, e1.id), (ChangeKind.DELETED, bob.id), (ChangeKind.DELETED, old.id)},
    ]
    start = 0
    for group in groups:
        assert set(got[start : start + len(group)]) == group
        start += len(group)
    assert start == len(got)
    page = await store.changes.since(user, 2, 3)
    assert [c.seq for c in page] == [3, 4, 5]


# --- extraction bookkeeping -------------------------------------------------------------


async def test_due_for_extraction(store: GraphStore) -> None:
    a, b = new_user(), new_user()
    ea = episode("a", "pending one")
    eb = episode("b", "pending two")
    await put(store, a, [ea])
    await put(store, b, [eb])
    now = datetime.now(UTC) + timedelta(seconds=1)

    def mine(rows: list[tuple[UserRef, Episode]]) -> dict[str, UserRef]:
        return {ep.id: u for u, ep in rows if u in (a, b)}

    due = mine(await store.episodes.due_for_extraction(now, 1000))
    assert due == {ea.id: a, eb.id: b}

    await store.episodes.set_extraction(a, ea.id, ExtractionStatus(state=ExtractionState.DONE))
    retry_at = now + timedelta(minutes=5)
    await store.episodes.set_extraction(
        b,
        eb.id,
        ExtractionStatus(
            state=ExtractionState.FAILED, attempts=1, last_error="boom", next_attempt_at=retry_at
        ),
    )
    assert mine(await store.episodes.due_for_extraction(now, 1000)) == {}
    later = mine(await store.episodes.due_for_extraction(retry_at, 1000))
    assert later == {eb.id: b}
    rows = [ep for u, ep in await store.episodes.due_for_extraction(retry_at, 1000) if u == b]
    assert rows[0].extraction.last_error == "boom" and rows[0].extraction.attempts == 1
    # failed with no retry time: given up, never due again
    await store.episodes.set_extraction(
        b, eb.id, ExtractionStatus(state=ExtractionState.FAILED, attempts=5)
    )
    assert mine(await store.episodes.due_for_extraction(retry_at, 1000)) == {}


async def test_extraction_backlog_counts_what_is_still_to_extract(store: GraphStore) -> None:
    base = await store.episodes.extraction_backlog()
    user = new_user()
    first, second = episode("a", "pending one"), episode("b", "pending two")
    await put(store, user, [first, second])
    assert await store.episodes.extraction_backlog() == base + 2
    await store.episodes.set_extraction(
        user, first.id, ExtractionStatus(state=ExtractionState.DONE)
    )
    retry_at = datetime.now(UTC) + timedelta(hours=1)
    failed = ExtractionStatus(state=ExtractionState.FAILED, attempts=1, next_attempt_at=retry_at)
    await store.episodes.set_extraction(user, second.id, failed)
    assert await store.episodes.extraction_backlog() == base + 1  # a retry is still to come
    given_up = ExtractionStatus(state=ExtractionState.FAILED, attempts=5)
    await store.episodes.set_extraction(user, second.id, given_up)
    assert await store.episodes.extraction_backlog() == base


async def test_usage_counts_memories_and_text_bytes_per_user_and_tenant(
    store: GraphStore,
) -> None:
    user = new_user()
    other_user = UserRef(tenant=user.tenant, user_id=user.user_id + "-2")
    elsewhere = new_user()  # another tenant
    assert await store.users.usage(user) == Usage()
    await put(store, user, [episode("a", "café"), episode("b", "東京 trip")])
    await put(store, other_user, [episode("c", "plain")])
    await put(store, elsewhere, [episode("d", "not counted")])
    text_bytes = len("café".encode()) + len("東京 trip".encode())
    assert await store.users.usage(user) == Usage(2, text_bytes)
    assert await store.users.tenant_usage(user.tenant) == Usage(3, text_bytes + 5)
    await store.users.delete(other_user)
    assert await store.users.tenant_usage(user.tenant) == Usage(2, text_bytes)


# --- opening ----------------------------------------------------------------------------


async def test_reopen_keeps_data_and_checks_embedding_model(store_factory: StoreFactory) -> None:
    user = new_user()
    s = store_factory()
    await s.open(embedding_model=MODEL, dimension=DIM)
    await put(s, user, [episode("a", "kept")])
    assert await s.ping()
    await s.close()

    for model, dim in ((MODEL, DIM * 2), ("other-embedder", DIM)):
        s = store_factory()
        with pytest.raises(EmbeddingMismatchError) as info:
            await s.open(embedding_model=model, dimension=dim)
        message = str(info.value)
        assert MODEL in message and model in message
        assert str(DIM) in message and str(dim) in message

    s = store_factory()
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        assert len(await s.episodes.chain(user)) == 1
    finally:
        await s.close()
    assert not await s.ping()
