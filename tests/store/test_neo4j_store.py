"""Neo4j-specific guarantees beyond the conformance suite.

- the NEXT relationships are exactly the (occurred_at, seq) order after back-fill, equal times,
  concurrent batches, moves by replace and deletes;
- every user-data node carries tenant and user, and no relationship joins two users;
- the schema: constraints, a cosine vector index of the opened dimension, the full-text index,
  created idempotently and re-created when missing;
- the vector cache of one server sees what another server (another store instance) wrote;
- the native-index vector path (cache off) passes the search tests of the conformance suite,
  and its over-fetch / exact fallback both run;
- full-text search stays inside the user even when other users match better.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from neo4j import Driver, GraphDatabase

from persona_server.adapters.stores.neo4j import Neo4jGraphStore
from persona_server.adapters.stores.neo4j import chain as chain_module
from persona_server.adapters.stores.neo4j import episodes as episodes_module
from persona_server.adapters.stores.neo4j import search as search_module
from persona_server.adapters.stores.neo4j.schema import SCHEMA_VERSION, TEXT_INDEX, VECTOR_INDEX
from persona_server.adapters.stores.values import to_us
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import PROVENANCE_LIMIT, DerivedWrite, MemoryFilter
from tests.neo4j_plugin import Neo4jTarget

from .conftest import neo4j_store
from .helpers import (
    DIM,
    MODEL,
    T0,
    by_id,
    entity,
    episode,
    fact,
    hours,
    near,
    new_user,
    put,
    unit,
    units,
)

# Imported tests are collected again in this module, where `store` is the cache-less store
# below: the conformance search tests re-run against the native vector index path.
from .test_conformance import (  # noqa: F401
    _graph,
    test_as_of_excludes_what_was_recorded_later,
    test_delete_user_removes_everything,
    test_replace_keeps_id_and_swaps_text,
    test_search_filters,
    test_tenants_are_isolated,
    test_vector_search_ranks_by_cosine,
    test_vector_search_sees_writes_and_deletes,
    test_write_derived_updates_in_place,
)

NO_FILTER = MemoryFilter()


@pytest.fixture
def target(neo4j_store_target: Neo4jTarget) -> Neo4jTarget:
    return neo4j_store_target


@pytest.fixture
def cypher(target: Neo4jTarget) -> Iterator[Driver]:
    with GraphDatabase.driver(target.uri, auth=target.auth) as driver:
        yield driver


def q(driver: Driver, target: Neo4jTarget, query: str, **params: Any) -> list[dict[str, Any]]:
    records, _, _ = driver.execute_query(query, params, database_=target.database)
    return [r.data() for r in records]


async def opened(target: Neo4jTarget, **options: Any) -> Neo4jGraphStore:
    s = neo4j_store(target, **options)
    await s.open(embedding_model=MODEL, dimension=DIM)
    return s


@pytest.fixture
async def neo(target: Neo4jTarget) -> AsyncIterator[Neo4jGraphStore]:
    s = await opened(target)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
async def store(target: Neo4jTarget) -> AsyncIterator[Neo4jGraphStore]:
    """For the re-run conformance tests: vectors from the native index, never from the cache."""
    s = await opened(target, vector_cache_bytes=0)
    try:
        yield s
    finally:
        await s.close()


pytestmark = pytest.mark.neo4j


# --- the NEXT chain -------------------------------------------------------------------------


def next_walk(driver: Driver, target: Neo4jTarget, user: UserRef) -> list[str]:
    """The user's episodes by following NEXT from the one without a predecessor."""
    base = {"tenant": user.tenant, "user_id": user.user_id}
    links = q(
        driver,
        target,
        "MATCH (a:Episode {tenant: $tenant, user_id: $user_id})-[:NEXT]->(b:Episode) "
        "RETURN a.id AS a, b.id AS b",
        **base,
    )
    nodes = q(
        driver,
        target,
        "MATCH (e:Episode {tenant: $tenant, user_id: $user_id}) RETURN e.id AS id",
        **base,
    )
    succ = {r["a"]: r["b"] for r in links}
    assert len(succ) == len(links), "an episode has two outgoing NEXT"
    assert len(set(succ.values())) == len(links), "an episode has two incoming NEXT"
    heads = {n["id"] for n in nodes} - set(succ.values())
    if not nodes:
        return []
    assert len(heads) == 1, f"the chain is broken into pieces: {heads}"
    walk = [heads.pop()]
    while walk[-1] in succ:
        walk.append(succ[walk[-1]])
    assert len(walk) == len(nodes), "NEXT does not reach every episode once"
    return walk


async def test_next_relationships_follow_event_time(
    neo: Neo4jGraphStore, cypher: Driver, target: Neo4jTarget
) -> None:
    user = new_user()

    async def check() -> None:
        assert next_walk(cypher, target, user) == await neo.episodes.chain(user)

    e10, e20, e30 = (episode(f"s{h}", f"at {h}", hours(h)) for h in (10, 20, 30))
    await put(neo, user, [e20, e10])
    await check()
    e5 = episode("s5", "at 5", hours(5))
    await put(neo, user, [e30, episode("s15", "at 15", hours(15)), e5])
    await check()
    # equal event times keep ingest order, also inside one batch
    await put(neo, user, [episode(f"t{i}", f"same {i}", hours(15)) for i in range(3)])
    await check()
    # concurrent batches: each one contiguous, the whole a single chain
    batches = [[episode(f"c{b}-{i}", f"c {b} {i}", hours(25)) for i in range(4)] for b in range(5)]
    await asyncio.gather(*(put(neo, user, batch) for batch in batches))
    await check()
    # replace moves an episode in time: it leaves its old place and joins the new one
    await put(neo, user, [episode("s5", "moved to 26", hours(26))], replace=True)
    await check()
    chain = await neo.episodes.chain(user)
    assert chain.index(e5.id) == chain.index(e30.id) - 1
    # deleting the head, a middle one and the tail relinks around each
    for victim in (chain[0], chain[len(chain) // 2], chain[-1]):
        await neo.memories.delete(user, victim)
        await check()
    # a batch that replaces and inserts around the same spot
    await put(
        neo,
        user,
        [episode("s20", "now at 1", hours(1)), episode("n1", "new at 1", hours(1))],
        replace=True,
    )
    await check()
    # appends at the tail (the common, in-order stream), out of order inside the batch, and
    # at the very time of the tail (ingest order breaks the tie)
    await put(neo, user, [episode("a61", "at 61", hours(61)), episode("a60", "at 60", hours(60))])
    await check()
    await put(neo, user, [episode("b61", "also 61", hours(61)), episode("b62", "62", hours(62))])
    await check()
    chain = await neo.episodes.chain(user)
    assert [m.source_id for m in (await neo.memories.get_many(user, chain[-4:])).values()] == [
        "a60",
        "a61",
        "b61",
        "b62",
    ]
    for i in (0, 2, len(chain) // 2, len(chain) - 1):
        n = await neo.episodes.chain_neighbours(user, [chain[i]], before=3, after=2)
        assert n[chain[i]] == chain[max(i - 3, 0) : i] + chain[i + 1 : i + 3]


# --- tenancy in the data itself ---------------------------------------------------------------


def db_hits(plan: Any) -> int:
    return int(plan.get("dbHits", 0)) + sum(db_hits(c) for c in plan.get("children", []))


async def test_chain_seeks_read_the_chain_index_not_every_episode(
    neo: Neo4jGraphStore, cypher: Driver, target: Neo4jTarget
) -> None:
    # The (tenant, user_id, seq) index matches these statements' predicates too; chosen by the
    # planner (it was, for a user of some thousands of episodes), it made each Ingest read and
    # sort every episode of the user to find the tail. The episodes are made in Cypher: only
    # the index entries matter here, and 8,000 through `put` would take a minute.
    user = new_user("chain-seek")
    params = {"tenant": user.tenant, "user_id": user.user_id}
    # Planned first for an empty user, as a new user's first Ingest does.
    first = episode("first", "first line", T0)
    await put(neo, user, [first])
    q(
        cypher,
        target,
        "UNWIND range(1, $n) AS i CREATE (:Memory:Episode {tenant: $tenant, "
        "user_id: $user_id, id: 'ep_' + toString(i), chain_at: $after + i, seq: 1000 + i})",
        n=8000,
        after=to_us(T0),
        **params,
    )
    with cypher.session(database=target.database) as session:
        session.run("CALL db.awaitIndexes()").consume()
        tail = session.run("PROFILE " + chain_module._TAIL, params)
        assert [r["id"] for r in tail] == ["ep_8000"]
        assert db_hits(tail.consume().profile) < 50
        chain = session.run("PROFILE " + episodes_module._CHAIN, params)
        assert [r["id"] for r in chain][:3] == [first.id, "ep_1", "ep_2"]
        # In index order: nothing read is sorted again.
        assert "Sort" not in str(chain.consume().profile) and "Top" not in str(
            chain.consume().profile
        )


async def test_every_node_is_owned_and_no_edge_crosses_users(
    neo: Neo4jGraphStore, cypher: Driver, target: Neo4jTarget
) -> None:
    a, b = new_user("same"), new_user("same")
    for u in (a, b):
        await _graph(neo, u)
    unowned = q(
        cypher,
        target,
        # Knowledge schemas belong to a tenant, not to a user: they carry the tenant only.
        "MATCH (n) WHERE (n.tenant IS NULL OR (n.user_id IS NULL AND NOT n:PersonaKnowledgeSchema))"
        " AND NOT n:PersonaMeta RETURN labels(n) AS labels LIMIT 5",
    )
    assert unowned == []
    crossing = q(
        cypher,
        target,
        "MATCH (x)-[r]->(y) WHERE x.tenant <> y.tenant OR x.user_id <> y.user_id "
        "RETURN type(r) AS type LIMIT 5",
    )
    assert crossing == []
    kinds = q(
        cypher,
        target,
        "MATCH (x {tenant: $tenant})-[r]->() RETURN DISTINCT type(r) AS type",
        tenant=a.tenant,
    )
    assert {r["type"] for r in kinds} == {"NEXT", "MENTIONS", "DERIVED_FROM", "SUBJECT", "OBJECT"}


# --- schema -----------------------------------------------------------------------------------


async def test_schema_is_created_idempotently_and_recreated(
    neo: Neo4jGraphStore, cypher: Driver, target: Neo4jTarget
) -> None:
    indexes = {
        r["name"]: r
        for r in q(
            cypher,
            target,
            "SHOW INDEXES YIELD name, type, state, properties, options "
            "WHERE name STARTS WITH 'persona_' RETURN *",
        )
    }
    assert all(i["state"] == "ONLINE" for i in indexes.values())
    vector = indexes[VECTOR_INDEX]
    assert vector["type"] == "VECTOR"
    assert vector["options"]["indexConfig"]["vector.dimensions"] == DIM
    assert vector["options"]["indexConfig"]["vector.similarity_function"].lower() == "cosine"
    text = indexes[TEXT_INDEX]
    assert text["type"] == "FULLTEXT"
    assert text["options"]["indexConfig"]["fulltext.analyzer"] == "english"
    constraints = {
        r["name"]: r["properties"]
        for r in q(
            cypher,
            target,
            "SHOW CONSTRAINTS YIELD name, properties WHERE name STARTS WITH 'persona_' RETURN *",
        )
    }
    assert constraints["persona_memory_key"] == ["tenant", "user_id", "id"]
    assert constraints["persona_episode_source"] == ["tenant", "user_id", "source_id"]

    # Dropped while no server watched: the next open brings it back, same definition.
    q(cypher, target, f"DROP INDEX {TEXT_INDEX}")
    q(cypher, target, "DROP CONSTRAINT persona_episode_source")
    again = await opened(target)
    try:
        after = {
            r["name"]
            for r in q(
                cypher,
                target,
                "SHOW INDEXES YIELD name, state WHERE state = 'ONLINE' RETURN name",
            )
        }
        assert set(indexes) <= after
        user = new_user()
        await put(again, user, [episode("a", "the river was cold")])
        assert len(await again.search.text(user, "river", 5, NO_FILTER)) == 1
    finally:
        await again.close()


async def test_upgrade_from_version_1_marks_provenance_links(
    neo: Neo4jGraphStore, cypher: Driver, target: Neo4jTarget
) -> None:
    """A database written before provenance links carried their order (schema version 1) is
    brought up to date at start-up, and reads find its provenance again."""
    user = new_user()
    eps = [episode(f"u{i}", f"met Ana {i}", hours(i)) for i in range(PROVENANCE_LIMIT + 3)]
    await put(neo, user, eps)
    ana = entity("Ana", kind="person")
    await neo.memories.write_derived(
        user, *(DerivedWrite(e.id, [ana], by_id([ana], units(1))) for e in eps)
    )
    before = (await neo.memories.get_many(user, [ana.id]))[ana.id]
    assert before.episode_ids == [e.id for e in eps[:PROVENANCE_LIMIT]]

    q(
        cypher,
        target,
        "MATCH ()-[r:DERIVED_FROM]->() REMOVE r.tenant, r.user_id, r.memory_id, r.seq",
    )
    q(cypher, target, "MATCH (m:PersonaMeta {key: 'store'}) SET m.schema_version = 1")
    assert (await neo.memories.get_many(user, [ana.id]))[ana.id].episode_ids == []

    again = await opened(target)
    try:
        after = (await again.memories.get_many(user, [ana.id]))[ana.id]
        assert after.episode_ids == before.episode_ids
        assert after.source_ids == before.source_ids
    finally:
        await again.close()
    meta = q(cypher, target, "MATCH (m:PersonaMeta {key: 'store'}) RETURN m.schema_version AS v")
    assert meta == [{"v": SCHEMA_VERSION}]


# --- the vector cache across servers ----------------------------------------------------------


async def test_vector_cache_sees_other_servers_writes(
    neo: Neo4jGraphStore, target: Neo4jTarget
) -> None:
    other = await opened(target)  # a second replica on the same database
    try:
        user = new_user()
        va, vb = unit(101).reshape(1, -1), unit(102).reshape(1, -1)
        a = episode("a", "first")
        await put(neo, user, [a], vectors=va)
        assert [h.memory_id for h in await neo.search.vector(user, va, 1, NO_FILTER)] == [a.id]
        assert user in neo.vector_cache

        b = episode("b", "second")
        await put(other, user, [b], vectors=vb)
        assert [h.memory_id for h in await neo.search.vector(user, vb, 1, NO_FILTER)] == [b.id]

        # an invalidation elsewhere changes what the default filter lets through
        bob = entity("Bob")
        old = fact(bob, "likes", text="Bob likes jazz")
        vf = unit(103).reshape(1, -1)
        await other.memories.write_derived(
            user, DerivedWrite(b.id, [bob, old], {bob.id: unit(104), old.id: vf[0]})
        )
        assert (await neo.search.vector(user, vf, 1, NO_FILTER))[0].memory_id == old.id
        new = fact(bob, "likes", text="Bob likes blues")
        await other.memories.write_derived(
            user, DerivedWrite(b.id, [new], by_id([new], units(1)), invalidate=[(old.id, T0)])
        )
        hits = await neo.search.vector(user, vf, 10, NO_FILTER)
        assert old.id not in {h.memory_id for h in hits}

        # side-by-side searches (Recall's vector and time channels) share one head read, and
        # both still see a write another server committed just before them
        c0 = episode("c0", "third")
        vc = unit(105).reshape(1, -1)
        await put(other, user, [c0], vectors=vc)
        both = await asyncio.gather(
            neo.search.vector(user, vc, 1, NO_FILTER), neo.search.vector(user, vc, 1, NO_FILTER)
        )
        assert [[h.memory_id for h in hits] for hits in both] == [[c0.id], [c0.id]]
        await other.memories.delete(user, c0.id)

        await other.memories.delete(user, b.id)
        hits = await neo.search.vector(user, vb, 10, NO_FILTER)
        assert {h.memory_id for h in hits} == {a.id}

        # deleted and created again elsewhere: nothing of the old user may come back
        await other.users.delete(user)
        c = episode("c", "third")
        await put(other, user, [c], vectors=va)
        hits = await neo.search.vector(user, va, 10, NO_FILTER)
        assert [h.memory_id for h in hits] == [c.id]
    finally:
        await other.close()


async def test_vector_cache_bound_falls_back_to_the_index(target: Neo4jTarget) -> None:
    tiny = await opened(target, vector_cache_bytes=1)  # no user fits
    try:
        user = new_user()
        eps = [episode(f"s{i}", f"t{i}") for i in range(20)]
        vecs = units(20)
        await put(tiny, user, eps, vectors=vecs)
        hits = await tiny.search.vector(user, vecs[3].reshape(1, -1), 3, NO_FILTER)
        assert hits[0].memory_id == eps[3].id
        assert hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert user not in tiny.vector_cache
    finally:
        await tiny.close()


async def test_vector_cache_evicts_least_recently_searched(target: Neo4jTarget) -> None:
    a, b = new_user(), new_user()
    va, vb = units(30), units(30)
    probe = await opened(target)
    try:
        await put(probe, a, [episode(f"a{i}", f"a{i}") for i in range(30)], vectors=va)
        await probe.search.vector(a, va[:1], 1, NO_FILTER)
        one_user = probe.vector_cache.nbytes
    finally:
        await probe.close()
    s = await opened(target, vector_cache_bytes=one_user + one_user // 2)
    try:
        eps_b = [episode(f"b{i}", f"b{i}") for i in range(30)]
        await put(s, b, eps_b, vectors=vb)
        assert (await s.search.vector(a, va[3:4], 1, NO_FILTER))[0].score == pytest.approx(1.0)
        assert a in s.vector_cache
        hits = await s.search.vector(b, vb[5:6], 1, NO_FILTER)
        assert hits[0].memory_id == eps_b[5].id
        assert b in s.vector_cache and a not in s.vector_cache
        assert s.vector_cache.nbytes <= s.vector_cache.max_bytes
        # evicted users load again on their next search
        assert (await s.search.vector(a, va[7:8], 1, NO_FILTER))[0].score == pytest.approx(1.0)
        assert a in s.vector_cache and b not in s.vector_cache
    finally:
        await s.close()


# --- the native index path ---------------------------------------------------------------------


async def test_index_path_uses_ann_then_exact_fallback(
    store: Neo4jGraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    real_rows = search_module.rows

    async def spy(tx: Any, query: str, params: Any) -> list[dict[str, Any]]:
        ran.append("ann" if "queryNodes" in query else "exact")
        return await real_rows(tx, query, params)

    monkeypatch.setattr(search_module, "rows", spy)
    user = new_user()
    target = unit(555)
    eps = [episode(f"s{i}", f"t{i}") for i in range(12)]
    close = np.stack([near(target, 0.05)[0] for _ in eps])
    await put(store, user, eps, vectors=close)

    # The user's vectors are the nearest in the whole index: the over-fetch fills k.
    hits = await store.search.vector(user, target.reshape(1, -1), 5, NO_FILTER)
    assert len(hits) == 5 and ran == ["ann"]
    expected = np.argsort(-(close @ target))[:5]
    assert [h.memory_id for h in hits] == [eps[i].id for i in expected]

    # More than the user has: the filtered over-fetch comes up short, the exact scan answers.
    ran.clear()
    hits = await store.search.vector(user, target.reshape(1, -1), 50, NO_FILTER)
    assert len(hits) == 12 and ran == ["ann", "exact"]


# --- full-text ---------------------------------------------------------------------------------


async def test_text_search_stays_inside_the_user_among_many(neo: Neo4jGraphStore) -> None:
    # Many other users with the same words rank above nothing of ours: owner filters in Lucene.
    noisy = [new_user() for _ in range(5)]
    for u in noisy:
        await put(neo, u, [episode(f"n{i}", "river river river river") for i in range(30)])
    user = new_user()
    mine = episode("m", "a walk by the river", T0 + timedelta(hours=1))
    await put(neo, user, [mine])
    hits = await neo.search.text(user, "river", 3, NO_FILTER)
    assert [h.memory_id for h in hits] == [mine.id]
