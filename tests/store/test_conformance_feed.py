"""Conformance of what the context feed reads: ranked (profile) reads and change-log retention.

Runs against every store kind like test_conformance.py (same fixtures).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from persona_server.adapters.stores.ranking import best_first_key
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import GoalStatus, Memory, MemoryType, UserRef
from persona_server.ports.graph_store import DerivedWrite, GraphStore, MemoryOrder, RankedRead

from .conftest import neo4j_store
from .helpers import DIM, MODEL, T0, by_id, entity, episode, goal, hours, psyche, put, units

EPISODES = 520  # more than any first page: the newest are not among the first recorded


def _best(memories: list[Memory], order: MemoryOrder, limit: int) -> list[str]:
    ranked = sorted(memories, key=lambda m: best_first_key(order, m), reverse=True)
    return [m.id for m in ranked[:limit]]


async def test_ranked_reads_pick_each_groups_best(store: GraphStore, user: UserRef) -> None:
    rng = random.Random(7)
    # Two batches, the second back-filled between the first's events (each batch in random
    # order), so neither record time nor ingest order is the answer; two episodes share one
    # event time (the ingest order breaks the tie).
    half = EPISODES // 2
    odd, even = list(range(1, EPISODES, 2)), list(range(0, EPISODES, 2))
    rng.shuffle(odd)
    rng.shuffle(even)
    episodes = [episode(f"s{i}", f"episode {i}", at=hours(h)) for i, h in enumerate(odd + even)]
    episodes[half] = episode(f"s{half}", "same time as the newest", at=hours(EPISODES - 1))
    await put(store, user, episodes[:half])
    await put(store, user, episodes[half:])
    # The store numbers episodes in ingest order (`seq`), which breaks event-time ties.
    stored = {e.id: e.model_copy(update={"seq": i + 1}) for i, e in enumerate(episodes)}

    anchor = episodes[0]
    mentions = [rng.randint(1, 9) for _ in range(30)]

    def day(i: int) -> dict[str, Any]:
        return {"recorded_at": T0 + timedelta(days=i)}

    psyches = [
        psyche(f"likes thing {i}", key=f"p{i}", mention_count=n).model_copy(update=day(i))
        for i, n in enumerate(mentions)
    ]
    entities = [
        entity(f"Person {i}", mention_count=n).model_copy(update=day(i))
        for i, n in enumerate(reversed(mentions))
    ]
    statuses = [GoalStatus.ACTIVE, GoalStatus.ACHIEVED, GoalStatus.ABANDONED]
    goals = [
        goal(f"goal {i}", key=f"g{i}", status=statuses[i % 3]).model_copy(update=day(i))
        for i in range(30)
    ]
    derived: list[Any] = [*psyches, *entities, *goals]
    strongest = max(psyches, key=lambda p: (p.mention_count, p.recorded_at, p.id))
    await store.memories.write_derived(
        user,
        DerivedWrite(anchor.id, derived, by_id(derived, units(len(derived)))),
        # An invalidated memory never belongs to a group, however strong.
        DerivedWrite(anchor.id, [], invalidate=[(strongest.id, hours(1))]),
    )
    fetched = await store.memories.get_many(user, [m.id for m in derived])

    reads = [
        RankedRead(MemoryType.EPISODE, MemoryOrder.LATEST_EVENT, 7),
        RankedRead(MemoryType.PSYCHE, MemoryOrder.MOST_MENTIONED, 5),
        RankedRead(MemoryType.ENTITY, MemoryOrder.MOST_MENTIONED, 5),
        RankedRead(MemoryType.GOAL, MemoryOrder.LATEST_RECORDED, 4, GoalStatus.ACTIVE),
        RankedRead(MemoryType.GOAL, MemoryOrder.LATEST_RECORDED, 4),
    ]
    got = [[m.id for m in group] for group in await store.memories.ranked(user, reads)]

    latest = _best(list(stored.values()), MemoryOrder.LATEST_EVENT, 7)
    assert got[0] == latest
    assert stored[latest[0]].occurred_at == stored[latest[1]].occurred_at
    valid_psyche = [fetched[p.id] for p in psyches if p.id != strongest.id]
    assert got[1] == _best(valid_psyche, MemoryOrder.MOST_MENTIONED, 5)
    assert strongest.id not in got[1]
    assert got[2] == _best([fetched[e.id] for e in entities], MemoryOrder.MOST_MENTIONED, 5)
    active = [fetched[g.id] for g in goals if g.status is GoalStatus.ACTIVE]
    assert got[3] == _best(active, MemoryOrder.LATEST_RECORDED, 4)
    assert got[4] == _best([fetched[g.id] for g in goals], MemoryOrder.LATEST_RECORDED, 4)
    # Whole memories come back, provenance included.
    assert fetched[got[1][0]].episode_ids == [anchor.id]


async def test_ranked_reads_follow_status_changes(store: GraphStore, user: UserRef) -> None:
    anchor = episode("a", "anchor")
    await put(store, user, [anchor])
    g = goal("run a marathon", key="marathon")
    await store.memories.write_derived(user, DerivedWrite(anchor.id, [g], by_id([g], units(1))))
    read = [RankedRead(MemoryType.GOAL, MemoryOrder.LATEST_RECORDED, 5, GoalStatus.ACTIVE)]
    assert [m.id for m in (await store.memories.ranked(user, read))[0]] == [g.id]
    done = g.model_copy(update={"status": GoalStatus.ACHIEVED})
    await store.memories.write_derived(user, DerivedWrite(anchor.id, [done]))
    assert (await store.memories.ranked(user, read))[0] == []


async def test_ranked_reads_of_an_unknown_user_are_empty(store: GraphStore) -> None:
    reads = [RankedRead(MemoryType.EPISODE, MemoryOrder.LATEST_EVENT, 3)]
    assert await store.memories.ranked(UserRef(tenant="nobody", user_id="x"), reads) == [[]]


# --- change-log retention ----------------------------------------------------------------

KEEP = 5


@pytest.fixture
async def small_log_store(
    store_kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[GraphStore]:
    s: GraphStore
    if store_kind == "sqlite":
        s = SqliteGraphStore(tmp_path / "small-log.db", change_log_max_entries=KEEP)
    else:
        s = neo4j_store(request.getfixturevalue("neo4j_store_target"), change_log_max_entries=KEEP)
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        yield s
    finally:
        await s.close()


async def test_change_log_keeps_the_newest_entries(
    small_log_store: GraphStore, user: UserRef
) -> None:
    store = small_log_store
    for i in range(4):
        await put(store, user, [episode(f"a{i}", f"one {i}"), episode(f"b{i}", f"two {i}")])
    latest = await store.changes.latest_seq(user)
    assert latest == 8
    kept = await store.changes.since(user, 0, 100)
    assert [c.seq for c in kept] == list(range(latest - KEEP + 1, latest + 1))
    # A reader positioned inside what is kept still reads on without a gap.
    assert [c.seq for c in await store.changes.since(user, latest - 2, 100)] == [7, 8]


async def test_prune_by_age_removes_old_entries_of_every_user(store: GraphStore) -> None:
    a, b = UserRef(tenant="t-prune", user_id="a"), UserRef(tenant="t-prune", user_id="b")
    for u in (a, b):
        await store.users.delete(u)
        await put(store, u, [episode("x", "x"), episode("y", "y")])
    cutoff = datetime.now(UTC) + timedelta(seconds=1)
    assert await store.changes.prune(datetime(2000, 1, 1, tzinfo=UTC), 100) == 0
    # Other tests' entries go too (the store may be shared): all of them are that old.
    assert await store.changes.prune(cutoff, 1) == 1
    while await store.changes.prune(cutoff, 500) == 500:
        pass
    for u in (a, b):
        assert await store.changes.since(u, 0, 10) == []
        assert await store.changes.latest_seq(u) == 2  # the counter stays: seqs never repeat
        await put(store, u, [episode("z", "z")])
        assert [c.seq for c in await store.changes.since(u, 0, 10)] == [3]


# --- the profile's reads are bounded: read from an index, never a sort of the user's rows ---

PROFILE_READS = [
    RankedRead(MemoryType.EPISODE, MemoryOrder.LATEST_EVENT, 10),
    RankedRead(MemoryType.PSYCHE, MemoryOrder.MOST_MENTIONED, 10),
    RankedRead(MemoryType.ENTITY, MemoryOrder.MOST_MENTIONED, 10),
    RankedRead(MemoryType.GOAL, MemoryOrder.LATEST_RECORDED, 10, GoalStatus.ACTIVE),
]


@pytest.mark.parametrize("read", PROFILE_READS, ids=lambda r: f"{r.memory_type}-{r.order}")
def test_sqlite_ranked_reads_walk_an_index(tmp_path: Path, read: RankedRead) -> None:
    import sqlite3

    from persona_server.adapters.stores.sqlite.memories import ranked_sql
    from persona_server.adapters.stores.sqlite.schema import SCHEMA

    conn = sqlite3.connect(tmp_path / "plan.db")
    conn.executescript(SCHEMA)
    sql, args = ranked_sql(read)
    plan = " | ".join(
        row[3]
        for row in conn.execute(
            f"EXPLAIN QUERY PLAN SELECT m.id FROM memories m {sql}", [1, *args, read.limit]
        )
    )
    conn.close()
    assert plan.startswith("SEARCH m USING INDEX"), plan
    assert "TEMP B-TREE" not in plan, plan


@pytest.mark.neo4j
@pytest.mark.parametrize("read", PROFILE_READS, ids=lambda r: f"{r.memory_type}-{r.order}")
async def test_neo4j_ranked_reads_walk_an_index(neo4j_store_target: Any, read: RankedRead) -> None:
    from neo4j import AsyncGraphDatabase

    from persona_server.adapters.stores.neo4j.memories import _ranked_statement

    params = {
        "tenant": "t",
        "user_id": "u",
        "type": read.memory_type.value,
        "status": read.goal_status.value if read.goal_status else None,
        "limit": read.limit,
        "prov_limit": 32,
    }
    target = neo4j_store_target
    store = neo4j_store(target)
    await store.open(embedding_model=MODEL, dimension=DIM)  # the indexes the hints name
    await store.close()
    async with AsyncGraphDatabase.driver(target.uri, auth=target.auth) as driver:
        summary = await driver.execute_query(
            "EXPLAIN " + _ranked_statement(read), params, database_=target.database
        )
    plan = summary.summary.plan
    assert plan is not None

    def first_rows(node: dict[str, Any]) -> list[str]:
        """Operators from the top down to the index seek, through the first child only
        (the provenance subquery is the second child of the Apply)."""
        ops = [node["operatorType"].split("@")[0]]
        children = node.get("children", [])
        return ops + (first_rows(children[0]) if children else [])

    chain = first_rows(plan)
    assert chain[-1] == "NodeIndexSeek", chain
    assert not {"Sort", "Top", "PartialTop", "PartialSort"} & set(chain), chain
