"""Retention on the embedded store leaves no trace in the database files, as DeleteUser does."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.adapters.stores.sqlite.retention import _EXPIRED
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import DerivedWrite, MemoryFilter

from .helpers import DIM, MODEL, by_id, entity, episode, hours, new_user, psyche, put, unit, units
from .test_sqlite_store import raw_bytes

MARKER = "Qvxretentionmarker"


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[SqliteGraphStore]:
    s = SqliteGraphStore(tmp_path / "persona.db")
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        yield s
    finally:
        await s.close()


async def test_expired_episodes_leave_no_trace_in_the_files(
    sqlite_store: SqliteGraphStore,
) -> None:
    user = new_user()
    neighbour = new_user()
    # Interleave old and new rows, and another tenant's, so they share pages.
    for i in range(30):
        await put(
            sqlite_store, neighbour, [episode(f"n{i}", f"ordinary day {i} at work", hours(i))]
        )
        await put(
            sqlite_store,
            user,
            [
                episode(
                    f"{MARKER}-{i}",
                    f"secret {MARKER} diary {i} " + "filler words " * 30,
                    hours(i),
                    metadata={"note": f"{MARKER} meta"},
                ),
                episode(f"keep-{i}", f"recent entry {i}", hours(1000 + i)),
            ],
        )
    chain = await sqlite_store.episodes.chain(user)
    ent = entity(f"{MARKER} Person", aliases=[f"{MARKER}alias"])
    likes = psyche(f"likes {MARKER}", key=MARKER)
    await sqlite_store.memories.write_derived(
        user, DerivedWrite(chain[0], [ent, likes], by_id([ent, likes], units(2)), [ent.id])
    )
    await sqlite_store.search.vector(user, unit(1).reshape(1, -1), 5, MemoryFilter())
    assert MARKER.encode() in raw_bytes(sqlite_store.path)

    done = await sqlite_store.episodes.expire(user.tenant, hours(500), 1000)

    assert [(d.episodes, d.derived) for d in done] == [(30, 2)]
    data = raw_bytes(sqlite_store.path)
    for needle in (MARKER, MARKER.lower()):
        assert needle.encode() not in data, f"{needle!r} left in the database files"
        assert needle.encode("utf-16-le") not in data
    conn = sqlite3.connect(sqlite_store.path)
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, memories_fts, row)")
        terms = {t for (t,) in conn.execute("SELECT term FROM temp.vocab")}
        assert not {t for t in terms if MARKER.lower() in t}
        assert {"work", "recent"} <= terms
    finally:
        conn.close()
    assert len(await sqlite_store.episodes.chain(user)) == 30
    assert len(await sqlite_store.episodes.chain(neighbour)) == 30
    hits = await sqlite_store.search.vector(user, unit(1).reshape(1, -1), 100, MemoryFilter())
    assert len(hits) == 30


async def test_a_batch_reads_the_chain_index_without_sorting_the_tenant(
    sqlite_store: SqliteGraphStore,
) -> None:
    # A first pass over a big tenant may face millions of expired episodes: each batch must
    # stop after its limit, not collect and sort all of them.
    for i in range(3):
        await put(sqlite_store, UserRef(tenant="t", user_id=f"u{i}"), [episode("a", "x", hours(1))])
    conn = sqlite3.connect(sqlite_store.path)
    try:
        conn.execute("ANALYZE")
        plan = [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {_EXPIRED}", (0, "t", 500))]
    finally:
        conn.close()
    assert any("memories_chain" in step for step in plan), plan
    assert not any("TEMP B-TREE" in step for step in plan), plan
