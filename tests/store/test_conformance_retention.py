"""Retention (`EpisodeOps.expire`), on every store: old episodes and what only they support go,
leaving no trace; mixed-provenance memories stay; the chain stays whole; other tenants and
newer episodes are untouched."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import numpy.typing as npt

from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import ChangeKind, Entity, Episode, Memory, UserRef
from persona_server.ports.graph_store import DerivedWrite, ExpiredEpisodes, GraphStore, MemoryFilter

from .helpers import by_id, entity, episode, fact, hours, new_user, psyche, put, unit, units

NO_FILTER = MemoryFilter()
CUTOFF = hours(5)


@dataclass
class World:
    old1: Episode
    old2: Episode
    new: Episode
    ana: Entity  # from old1 and new: stays
    bo: Entity  # from old1 and old2: both expire, so it goes
    cafe: Entity  # from old1 only
    acme: Entity  # from old2 only, with the fact about it
    vectors: dict[str, npt.NDArray[np.float32]]


async def _world(store: GraphStore, user: UserRef) -> World:
    old1 = episode("old1", "Zorblat lunch with Ana and Bo at Cafe Luz", hours(1))
    old2 = episode("old2", "Bo mentioned Quuxcorp hiring", hours(2))
    new = episode("new", "Ana called about the weekend", hours(10))
    await put(store, user, [old1, old2, new], vectors=np.stack([unit(101), unit(102), unit(103)]))
    ana = entity("Ana Silva", aliases=["Ana"], kind="person")
    bo = entity("Bo Zorblatsson", kind="person")
    cafe = entity("Cafe Luz", text="Cafe Luz zorblat place", kind="place")
    acme = entity("Quuxcorp", kind="organization")
    works = fact(bo, "works_at", acme, text="Bo works at Quuxcorp")
    likes = psyche("likes zorblat lunches", key="lunch")
    vecs = units(7)
    vectors = by_id([ana, bo, cafe, acme, works, likes], vecs[:6])
    await store.memories.write_derived(
        user,
        DerivedWrite(
            old1.id,
            [ana, bo, cafe, likes],
            {m.id: vectors[m.id] for m in (ana, bo, cafe, likes)},
            mentions=[ana.id, bo.id, cafe.id],
        ),
    )
    await store.memories.write_derived(
        user,
        DerivedWrite(
            old2.id,
            [bo.model_copy(update={"mention_count": 2}), acme, works],
            {m.id: vectors[m.id] for m in (acme, works)},
            mentions=[bo.id, acme.id],
        ),
    )
    await store.memories.write_derived(
        user,
        DerivedWrite(new.id, [ana.model_copy(update={"mention_count": 2})], mentions=[ana.id]),
    )
    return World(old1, old2, new, ana, bo, cafe, acme, {**vectors, "works": vectors[works.id]})


async def _export(store: GraphStore, user: UserRef) -> tuple[list[Memory], list[Edge]]:
    nodes: list[Memory] = []
    cursor = ""
    while True:
        page = await store.export.nodes(user, cursor=cursor, limit=100)
        nodes += page.memories
        if not (cursor := page.next_cursor):
            break
    edges: list[Edge] = []
    for kind in EdgeKind:
        cursor = ""
        while True:
            epage = await store.export.edges(user, kind, cursor=cursor, limit=100)
            edges += epage.edges
            if not (cursor := epage.next_cursor):
                break
    return nodes, edges


async def test_expire_deletes_old_episodes_and_what_only_they_support(
    store: GraphStore, user: UserRef
) -> None:
    w = await _world(store, user)
    everything = (
        await store.memories.list_page(user, filter=NO_FILTER, limit=100, cursor="")
    ).memories
    works_id = next(m.id for m in everything if m.text == "Bo works at Quuxcorp")
    likes_id = next(m.id for m in everything if m.text == "likes zorblat lunches")
    for v in w.vectors.values():  # fill the vector caches, so they must follow the delete
        assert await store.search.vector(user, v.reshape(1, -1), 1, NO_FILTER)
    seq_before = await store.changes.latest_seq(user)

    result = await store.episodes.expire(user.tenant, CUTOFF, 100)

    assert result == [ExpiredEpisodes(user, episodes=2, derived=5, kept=1)]
    gone = {w.old1.id, w.old2.id, w.bo.id, w.cafe.id, w.acme.id, works_id, likes_id}
    left = await store.memories.get_many(user, [*gone, w.ana.id, w.new.id])
    assert set(left) == {w.ana.id, w.new.id}
    ana = left[w.ana.id]
    assert ana.episode_ids == [w.new.id] and ana.source_ids == ["new"]
    assert ana.mention_count == 1  # the expired episode's mention went with it
    # no trace: full text, vectors, expansion, export, change log
    for word in ("zorblat", "Quuxcorp", "lunch", "Zorblatsson"):
        assert await store.search.text(user, word, 10, NO_FILTER) == [], word
    for key, v in w.vectors.items():
        hits = await store.search.vector(user, v.reshape(1, -1), 10, NO_FILTER)
        assert not {h.memory_id for h in hits} & gone, key
    assert w.old1.id not in (await store.search.expand(user, [w.ana.id], 10))[w.ana.id]
    nodes, edges = await _export(store, user)
    assert {n.id for n in nodes} == {w.ana.id, w.new.id}
    assert not any(n.text and ("zorblat" in n.text.lower()) for n in nodes)
    assert not {i for e in edges for i in (e.from_id, e.to_id)} & gone
    changes = await store.changes.since(user, seq_before, 100)
    assert {c.memory_id for c in changes if c.kind is ChangeKind.DELETED} == gone
    assert [c.memory_id for c in changes if c.kind is ChangeKind.UPDATED] == [w.ana.id]
    assert await store.episodes.chain(user) == [w.new.id]
    assert (await store.episodes.chain_neighbours(user, [w.new.id]))[w.new.id] == []
    # idempotent: nothing left to expire
    assert await store.episodes.expire(user.tenant, CUTOFF, 100) == []


async def test_expire_goes_in_bounded_batches_and_keeps_the_chain(
    store: GraphStore, user: UserRef
) -> None:
    eps = [episode(f"s{i}", f"entry {i}", hours(i)) for i in range(8)]
    await put(store, user, list(reversed(eps)))  # back-filled: ingest order is not event order
    sizes: list[int] = []
    while batch := await store.episodes.expire(user.tenant, CUTOFF, 2):
        sizes.append(sum(b.episodes for b in batch))
        chain = await store.episodes.chain(user)
        assert chain == [e.id for e in eps[8 - len(chain) :]]  # the oldest went first
        first = chain[0]
        assert (await store.episodes.chain_neighbours(user, [first]))[first] == [chain[1]]
    # Strictly older than the cutoff: the episode at hours(5) itself stays.
    assert sizes == [2, 2, 1]
    assert await store.episodes.chain(user) == [e.id for e in eps[5:]]


async def test_older_means_event_time_falling_back_to_record_time(
    store: GraphStore, user: UserRef
) -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    cutoff = now - timedelta(days=30)
    backfilled = episode("backfilled", "an old letter", now - timedelta(days=400), recorded_at=now)
    recent = episode(
        "recent", "yesterday's note", now - timedelta(days=1), recorded_at=now - timedelta(days=90)
    )
    undated_old = Episode.model_validate(
        {
            **episode("undated-old", "x").model_dump(),
            "occurred_at": None,
            "recorded_at": cutoff - timedelta(days=1),
        }
    )
    undated_new = Episode.model_validate(
        {**episode("undated-new", "y").model_dump(), "occurred_at": None, "recorded_at": now}
    )
    await put(store, user, [backfilled, recent, undated_old, undated_new])
    result = await store.episodes.expire(user.tenant, cutoff, 10)
    assert [r.episodes for r in result] == [2]
    left = await store.memories.get_many(
        user, [backfilled.id, recent.id, undated_old.id, undated_new.id]
    )
    assert set(left) == {recent.id, undated_new.id}


async def test_expire_stays_in_its_tenant(store: GraphStore, user: UserRef) -> None:
    colleague = UserRef(tenant=user.tenant, user_id="bob")
    stranger = new_user()
    for u in (user, colleague, stranger):
        await put(store, u, [episode("a", "old", hours(1)), episode("b", "new", hours(9))])
    assert user.tenant in await store.users.tenants()
    assert stranger.tenant in await store.users.tenants()
    result = await store.episodes.expire(user.tenant, CUTOFF, 10)
    assert sorted((r.user.user_id, r.episodes) for r in result) == [("alice", 1), ("bob", 1)]
    assert all(r.user.tenant == user.tenant for r in result)
    for u in (user, colleague):
        assert len(await store.episodes.chain(u)) == 1
    assert len(await store.episodes.chain(stranger)) == 2
    assert await store.episodes.expire("no-such-tenant", CUTOFF, 10) == []


async def test_concurrent_passes_delete_each_episode_once(store: GraphStore, user: UserRef) -> None:
    # Several replicas run the job: their batches overlap, and each episode goes exactly once.
    others = [UserRef(tenant=user.tenant, user_id=f"u{i}") for i in range(3)]
    for u in (user, *others):
        await put(store, u, [episode(f"s{i}", f"entry {i}", hours(i)) for i in range(8)])
    seq_before = {u: await store.changes.latest_seq(u) for u in (user, *others)}

    async def drain() -> int:
        total = 0
        while batch := await store.episodes.expire(user.tenant, CUTOFF, 3):
            total += sum(b.episodes for b in batch)
        return total

    totals = await asyncio.gather(*(drain() for _ in range(3)))
    assert sum(totals) == 4 * 5
    for u in (user, *others):
        chain = await store.episodes.chain(u)
        assert len(chain) == 3
        assert (await store.episodes.chain_neighbours(u, [chain[0]]))[chain[0]] == [chain[1]]
        deletes = [
            c
            for c in await store.changes.since(u, seq_before[u], 100)
            if c.kind is ChangeKind.DELETED
        ]
        assert len(deletes) == 5 == len({c.memory_id for c in deletes})
