"""`ExportOps` on every store: a user's whole graph in keyset pages, in the order the port
defines, the same whatever the page size (so both stores, and every page size, give one file).
"""

from __future__ import annotations

import itertools
from datetime import timedelta

from persona_server.domain.graph import Edge, EdgeKind
from persona_server.domain.models import Memory, UserRef
from persona_server.ports.graph_store import PROVENANCE_LIMIT, DerivedWrite, GraphStore
from persona_server.services.graph_export import EDGE_ORDER

from .helpers import T0, by_id, entity, episode, fact, hours, new_user, psyche, put, units

EPISODES = PROVENANCE_LIMIT + 8  # a hub cited by more episodes than a read lists


async def all_nodes(store: GraphStore, user: UserRef, limit: int) -> list[Memory]:
    out: list[Memory] = []
    cursor = ""
    while True:
        page = await store.export.nodes(user, cursor=cursor, limit=limit)
        assert len(page.memories) <= limit
        out.extend(page.memories)
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


async def all_edges(store: GraphStore, user: UserRef, kind: EdgeKind, limit: int) -> list[Edge]:
    out: list[Edge] = []
    cursor = ""
    while True:
        page = await store.export.edges(user, kind, cursor=cursor, limit=limit)
        out.extend(page.edges)
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


async def build(store: GraphStore, user: UserRef) -> dict[str, list[str]]:
    """Episodes ingested in batches, some back-filled; a hub entity from every episode; two
    entities per odd episode with a fact between them; a psyche item from three episodes."""
    eps = []
    for i in range(EPISODES):
        # Every fifth episode is back-filled before the start: ingest order != chain order.
        at = hours(-i) if i % 5 == 4 else hours(i)
        eps.append(episode(f"s{i:02d}", f"note {i}", at, recorded_at=T0 + timedelta(seconds=i)))
    for start in range(0, EPISODES, 7):
        await put(store, user, eps[start : start + 7])
    hub = entity("Sam")
    tea = psyche("likes tea", key="likes tea").model_copy(update={"id": "ps_tea"})
    writes = []
    for i, ep in enumerate(eps):
        memories = [hub.model_copy(update={"mention_count": i + 1})]
        mentions = [hub.id]
        if i % 2:
            a, b = entity(f"A{i}"), entity(f"B{i}")
            memories += [a, b, fact(a, "knows", b), fact(a, "age", object_value=str(i))]
            mentions += [b.id, a.id]
        if i in (3, 10, 30):
            memories.append(tea)
        writes.append(
            DerivedWrite(ep.id, memories, by_id(memories, units(len(memories))), mentions=mentions)
        )
    await store.memories.write_derived(user, *writes)
    return {
        "ingest": [e.id for e in eps],
        "chain": [e.id for e in sorted(eps, key=lambda e: (e.occurred_at, int(e.source_id[1:])))],
        "hub": [hub.id],
    }


async def test_nodes_come_in_ingest_order_then_by_record_time_whatever_the_page_size(
    store: GraphStore, user: UserRef
) -> None:
    ids = await build(store, user)
    whole = await all_nodes(store, user, 10_000)
    episodes = [m.id for m in whole if m.type == "episode"]
    derived = [m for m in whole if m.type != "episode"]
    assert episodes == ids["ingest"]
    assert whole[: len(episodes)] == [m for m in whole if m.type == "episode"]
    assert [(m.recorded_at, m.id) for m in derived] == sorted(
        (m.recorded_at, m.id) for m in derived
    )
    # Provenance lists stay empty: the DERIVED_FROM edges carry it.
    assert all(not m.episode_ids for m in derived)
    for limit in (1, 3, 64):
        assert await all_nodes(store, user, limit) == whole


async def test_edges_of_every_kind_in_their_order_whatever_the_page_size(
    store: GraphStore, user: UserRef
) -> None:
    ids = await build(store, user)
    chain = ids["chain"]
    nodes = {m.id: m for m in await all_nodes(store, user, 10_000)}
    rank = {eid: i for i, eid in enumerate(ids["ingest"])}
    edges = {kind: await all_edges(store, user, kind, 10_000) for kind in EDGE_ORDER}

    assert [(e.from_id, e.to_id) for e in edges[EdgeKind.NEXT]] == list(itertools.pairwise(chain))
    assert chain == await store.episodes.chain(user)
    # Every provenance link, the hub's included (more than a read lists), memory id then seq.
    derived_from = [(e.from_id, e.to_id) for e in edges[EdgeKind.DERIVED_FROM]]
    assert derived_from == sorted(derived_from, key=lambda p: (p[0], rank[p[1]]))
    hub_links = [to for frm, to in derived_from if frm == ids["hub"][0]]
    assert hub_links == ids["ingest"] and len(hub_links) > PROVENANCE_LIMIT
    assert [to for frm, to in derived_from if frm == "ps_tea"] == [
        ids["ingest"][i] for i in (3, 10, 30)
    ]
    mentions = [(e.from_id, e.to_id) for e in edges[EdgeKind.MENTIONS]]
    assert mentions == sorted(mentions, key=lambda p: (rank[p[0]], p[1]))
    assert len(mentions) == EPISODES + 2 * (EPISODES // 2)
    facts = [m for m in nodes.values() if m.type == "fact"]
    assert [(e.from_id, e.to_id) for e in edges[EdgeKind.SUBJECT]] == sorted(
        (f.id, f.subject_id)
        for f in facts  # type: ignore[attr-defined]
    )
    assert [(e.from_id, e.to_id) for e in edges[EdgeKind.OBJECT]] == sorted(
        (f.id, f.object_id)
        for f in facts
        if f.object_id  # type: ignore[attr-defined]
    )
    for limit in (1, 2, 7):
        for kind in EDGE_ORDER:
            assert await all_edges(store, user, kind, limit) == edges[kind], (kind, limit)


async def test_export_reads_only_the_user_and_follow_deletes(
    store: GraphStore, user: UserRef
) -> None:
    ids = await build(store, user)
    other = new_user(user.user_id)  # same user id, another tenant
    await put(store, other, [episode("x1", "elsewhere"), episode("x2", "elsewhere too", hours(1))])
    assert len(await all_nodes(store, other, 100)) == 2
    assert len(await all_edges(store, other, EdgeKind.NEXT, 100)) == 1
    nobody = new_user("nobody")
    assert await all_nodes(store, nobody, 100) == []
    for kind in EDGE_ORDER:
        assert await all_edges(store, nobody, kind, 100) == []
    # Deleting an episode relinks the chain around it, and its links go with it.
    gone = ids["chain"][5]
    await store.memories.delete(user, gone)
    chain = [c for c in ids["chain"] if c != gone]
    next_edges = await all_edges(store, user, EdgeKind.NEXT, 3)
    assert [(e.from_id, e.to_id) for e in next_edges] == list(itertools.pairwise(chain))
    for kind in (EdgeKind.MENTIONS, EdgeKind.DERIVED_FROM):
        assert all(gone not in (e.from_id, e.to_id) for e in await all_edges(store, user, kind, 50))
