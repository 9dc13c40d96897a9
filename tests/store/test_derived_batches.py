"""`write_derived` with many writes in one call behaves as the writes applied in turn.

Extraction hands a whole batch of episodes to one call, and the same memory (a person met in
several messages) often appears in more than one write. The Neo4j store applies the batch
set-wise in a fixed number of statements; these tests pin that it ends where writing each
`DerivedWrite` in order would, on every store.
"""

from __future__ import annotations

from collections import Counter

from persona_server.domain.models import ChangeKind, Entity, Episode, Fact, Psyche, UserRef
from persona_server.ports.graph_store import (
    PROVENANCE_LIMIT,
    DerivedWrite,
    GraphStore,
    MemoryFilter,
)

from .helpers import by_id, entity, episode, fact, hours, psyche, put, units


async def test_one_call_equals_the_writes_in_turn(store: GraphStore, user: UserRef) -> None:
    e1, e2, gone = (episode(f"e{i}", f"episode {i}", hours(i)) for i in (1, 2, 3))
    await put(store, user, [e1, e2, gone])
    tea = psyche("likes tea", key="tea")
    await store.memories.write_derived(user, DerivedWrite(e1.id, [tea], by_id([tea], units(1))))
    await store.memories.delete(user, gone.id)
    start = await store.changes.latest_seq(user)

    ana = entity("Ana", kind="person")
    porto = fact(ana, "lives_in", text="Ana lives in Porto")
    ana2 = ana.model_copy(update={"mention_count": 2, "episode_ids": [e1.id]})
    lisbon = fact(ana, "lives_in", text="Ana lives in Lisbon")
    tea2 = tea.model_copy(update={"text": "likes green tea"})
    orphan = psyche("from a deleted episode")
    await store.memories.write_derived(
        user,
        # new entity and fact; the existing psyche is contradicted
        DerivedWrite(
            e1.id,
            [ana, porto],
            by_id([ana, porto], units(2)),
            mentions=[ana.id],
            invalidate=[(tea.id, hours(1))],
        ),
        # the same entity again, a newer fact invalidating the first, the psyche restated
        DerivedWrite(
            e2.id,
            [ana2, lisbon, tea2],
            by_id([lisbon], units(1)),
            mentions=[ana.id],
            invalidate=[(porto.id, hours(2))],
        ),
        # an episode deleted meanwhile: dropped whole
        DerivedWrite(gone.id, [orphan], by_id([orphan], units(1))),
    )

    logged = await store.changes.since(user, start, 100)
    assert Counter((c.kind, c.memory_id) for c in logged) == Counter(
        [
            (ChangeKind.ADDED, ana.id),
            (ChangeKind.ADDED, porto.id),
            (ChangeKind.INVALIDATED, tea.id),
            (ChangeKind.UPDATED, ana.id),
            (ChangeKind.ADDED, lisbon.id),
            (ChangeKind.UPDATED, tea.id),
            (ChangeKind.INVALIDATED, porto.id),
        ]
    )
    assert [c.seq for c in logged] == list(range(start + 1, start + 1 + len(logged)))

    got = await store.memories.get_many(user, [ana.id, porto.id, lisbon.id, tea.id, orphan.id])
    assert orphan.id not in got
    got_ana, got_porto, got_tea = got[ana.id], got[porto.id], got[tea.id]
    assert isinstance(got_ana, Entity) and got_ana.mention_count == 2
    assert got_ana.episode_ids == [e1.id, e2.id]  # provenance is the union, in chain order
    assert isinstance(got_porto, Fact) and got_porto.invalid_at == hours(2)
    assert got[lisbon.id].invalid_at is None
    # invalidated by the first write, restated (valid) by the second: the last version wins
    assert isinstance(got_tea, Psyche) and got_tea.text == "likes green tea"
    assert got_tea.invalid_at is None

    out = await store.search.expand(user, [ana.id, e2.id], 10)
    assert set(out[ana.id]) >= {porto.id, lisbon.id, e1.id, e2.id}
    assert ana.id in out[e2.id]
    valid = await store.memories.list_page(user, filter=MemoryFilter(), limit=50, cursor="")
    assert porto.id not in {m.id for m in valid.memories}


async def test_reads_return_the_first_ingested_provenance(store: GraphStore, user: UserRef) -> None:
    # Ingested newest first: the first ingested are the latest in event time, and reads list
    # them in chain order.
    eps = [episode(f"s{i}", f"met Ana {i}", hours(i)) for i in range(PROVENANCE_LIMIT + 8)]
    for e in reversed(eps):
        await put(store, user, [e])
    ana = entity("Ana", kind="person")
    writes = [DerivedWrite(e.id, [ana], by_id([ana], units(1))) for e in reversed(eps)]
    await store.memories.write_derived(user, *writes)
    shown = eps[-PROVENANCE_LIMIT:]
    got = (await store.memories.get_many(user, [ana.id]))[ana.id]
    assert got.episode_ids == [e.id for e in shown]
    assert got.source_ids == [e.source_id for e in shown]
    # the links past the limit are kept: deleting the shown episodes does not orphan it
    for e in shown:
        await store.memories.delete(user, e.id)
    left = (await store.memories.get_many(user, [ana.id]))[ana.id]
    assert left.episode_ids == [e.id for e in eps[:-PROVENANCE_LIMIT]]


async def test_summary_is_set_by_the_write_that_carries_one(
    store: GraphStore, user: UserRef
) -> None:
    e1, e2 = episode("a", "long text one"), episode("b", "long text two")
    await put(store, user, [e1, e2])
    await store.memories.write_derived(
        user, DerivedWrite(e1.id, [], summary="first, summarised"), DerivedWrite(e2.id, [])
    )
    got = await store.memories.get_many(user, [e1.id, e2.id])
    first, second = got[e1.id], got[e2.id]
    assert isinstance(first, Episode) and first.summary == "first, summarised"
    assert isinstance(second, Episode) and second.summary == ""
    await store.memories.write_derived(user, DerivedWrite(e1.id, []))
    again = (await store.memories.get_many(user, [e1.id]))[e1.id]
    assert isinstance(again, Episode) and again.summary == "first, summarised"


async def test_carried_provenance_links_only_existing_episodes(
    store: GraphStore, user: UserRef
) -> None:
    """Provenance a merged memory carries over counts only for episodes of this user that
    exist; ids of deleted episodes, of other memories or of nothing are left out."""
    e1, e2, gone = (episode(s, f"text {s}", hours(i)) for i, s in enumerate(("a", "b", "c")))
    await put(store, user, [e1, e2, gone])
    await store.memories.delete(user, gone.id)
    other = psyche("some other memory")
    await store.memories.write_derived(user, DerivedWrite(e1.id, [other], by_id([other], units(1))))
    carried = psyche("merged", episode_ids=[e2.id, gone.id, other.id, "ep_nothing"])
    await store.memories.write_derived(
        user, DerivedWrite(e1.id, [carried], by_id([carried], units(1)))
    )
    got = (await store.memories.get_many(user, [carried.id]))[carried.id]
    assert got.episode_ids == [e1.id, e2.id]
    assert got.source_ids == ["a", "b"]


async def test_a_memory_carried_again_unchanged_is_logged_and_linked_as_in_turn(
    store: GraphStore, user: UserRef
) -> None:
    """A hub memory carried, unchanged, by several writes of one call (what a batch of
    episodes about the same person gives): each write logs it and links its episode, and an
    entity created mid-call can be mentioned by the writes after it."""
    eps = [episode(f"h{i}", f"hub {i}", hours(i)) for i in range(5)]
    await put(store, user, eps)
    start = await store.changes.latest_seq(user)
    bo = entity("Bo", kind="person", episode_ids=[eps[1].id])
    vector = by_id([bo], units(1))
    await store.memories.write_derived(
        user,
        DerivedWrite(eps[0].id, [], mentions=[bo.id]),  # not there yet: no link
        DerivedWrite(eps[1].id, [bo], vector),
        DerivedWrite(eps[2].id, [], mentions=[bo.id]),  # created by the write before
        DerivedWrite(eps[3].id, [bo], vector),
        DerivedWrite(eps[4].id, [bo], vector, mentions=[bo.id]),
    )
    logged = [(c.kind, c.memory_id) for c in await store.changes.since(user, start, 100)]
    assert logged == [
        (ChangeKind.ADDED, bo.id),
        (ChangeKind.UPDATED, bo.id),
        (ChangeKind.UPDATED, bo.id),
    ]
    got = (await store.memories.get_many(user, [bo.id]))[bo.id]
    assert got.episode_ids == [eps[1].id, eps[3].id, eps[4].id]
    out = await store.search.expand(user, [e.id for e in eps], 10)
    assert bo.id not in out.get(eps[0].id, [])
    assert all(bo.id in out[e.id] for e in eps[1:])
    hits = await store.search.vector(user, vector[bo.id], 5, MemoryFilter())
    assert next(h for h in hits if h.memory_id == bo.id).score > 0.99
