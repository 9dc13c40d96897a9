"""SQLite-specific guarantees: file settings, no trace after user deletion, the vector cache."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.adapters.stores.sqlite import search as sqlite_search
from persona_server.adapters.stores.sqlite.search import fts_query
from persona_server.adapters.stores.sqlite.vectors import VectorCache, load_user_vectors
from persona_server.adapters.stores.vector_matrix import Change, UserVectors, VectorRow
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import DerivedWrite, MemoryFilter

from .helpers import DIM, MODEL, by_id, entity, episode, new_user, psyche, put, unit, units

MARKER = "Zqxwvmarker"


@pytest.fixture
async def sqlite_store(tmp_path: Path):  # type: ignore[no-untyped-def]
    s = SqliteGraphStore(tmp_path / "persona.db")
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        yield s
    finally:
        await s.close()


def raw_bytes(path: Path) -> bytes:
    out = b""
    for suffix in ("", "-wal"):
        p = Path(str(path) + suffix)
        if p.exists():
            out += p.read_bytes()
    return out


async def test_file_is_wal_and_schema_recorded(sqlite_store: SqliteGraphStore) -> None:
    conn = sqlite3.connect(sqlite_store.path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    assert meta["embedding_model"] == MODEL
    assert meta["embedding_dimension"] == str(DIM)


async def test_delete_user_leaves_no_trace_in_the_files(sqlite_store: SqliteGraphStore) -> None:
    doomed = new_user()
    neighbours = [new_user() for _ in range(3)]
    marker = MARKER + "77"
    # Interleave the doomed user's rows with other users' so they share pages.
    for i in range(40):
        for u in neighbours:
            await put(sqlite_store, u, [episode(f"n{i}", f"ordinary day number {i} at work")])
        await put(
            sqlite_store,
            doomed,
            [
                episode(
                    f"{marker}-src-{i}",
                    f"secret {marker} diary entry {i} " + "filler words " * 30,
                    metadata={"note": f"{marker} meta"},
                )
            ],
        )
    ep_id = (await sqlite_store.episodes.chain(doomed))[0]
    ent = entity(f"{marker} Person", aliases=[f"{marker}alias"])
    likes = psyche(f"likes {marker}", key=marker)
    await sqlite_store.memories.write_derived(
        doomed,
        DerivedWrite(
            ep_id,
            [ent, likes],
            by_id([ent, likes], units(2)),
            [ent.id],
        ),
    )
    await sqlite_store.search.vector(doomed, unit(1).reshape(1, -1), 5, MemoryFilter())
    assert (doomed.tenant, doomed.user_id) in sqlite_store.vector_cache
    before = raw_bytes(sqlite_store.path)
    assert marker.encode() in before or marker.lower().encode() in before

    assert await sqlite_store.users.delete(doomed) == 42

    assert (doomed.tenant, doomed.user_id) not in sqlite_store.vector_cache
    data = raw_bytes(sqlite_store.path)
    for needle in (marker, marker.lower(), doomed.tenant):
        assert needle.encode() not in data, f"{needle!r} left in the database files"
        assert needle.encode("utf-16-le") not in data
    conn = sqlite3.connect(sqlite_store.path)
    try:
        conn.execute("CREATE VIRTUAL TABLE temp.vocab USING fts5vocab(main, memories_fts, row)")
        terms = {t for (t,) in conn.execute("SELECT term FROM temp.vocab")}
        assert not {t for t in terms if MARKER.lower() in t}
        assert "work" in terms
        assert conn.execute("SELECT count(*) FROM changes").fetchone()[0] == 3 * 40
        assert conn.execute("SELECT count(*) FROM vectors").fetchone()[0] == 3 * 40
    finally:
        conn.close()
    for u in neighbours:
        assert len(await sqlite_store.episodes.chain(u)) == 40


async def test_text_search_stays_inside_the_user(sqlite_store: SqliteGraphStore) -> None:
    users = [new_user() for _ in range(5)]
    for u in users:
        await put(sqlite_store, u, [episode(f"s{i}", f"coffee talk {i}") for i in range(20)])
    hits = await sqlite_store.search.text(users[2], "coffee", 100, MemoryFilter())
    own = set(await sqlite_store.episodes.chain(users[2]))
    assert len(hits) == 20 and {h.memory_id for h in hits} == own


async def test_terms_too_common_for_a_big_user_are_left_out_of_full_text(
    sqlite_store: SqliteGraphStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A cap of 20 rows stands in for the real one (thousands), so the user here can be small.
    monkeypatch.setattr(sqlite_search, "COMMON_TERM_ROWS", 20)
    big, small = new_user("big"), new_user("small")
    texts = [f"weekly meeting notes {i}" for i in range(57)]
    texts += ["meeting about the sailing regatta", "sailing lesson booked", "sailing gear"]
    await put(sqlite_store, big, [episode(f"b{i}", t) for i, t in enumerate(texts)])
    await put(sqlite_store, small, [episode(f"s{i}", t) for i, t in enumerate(texts[:15])])

    hits = await sqlite_store.search.text(big, "sailing meetings", 100, MemoryFilter())
    # "meeting" (stemmed from "meetings") is in 58 of 60 rows: left out, so only the rows
    # with "sailing" match, however many the caller asks for.
    assert len(hits) == 3
    # Every term common: the rarest one is still searched.
    assert len(await sqlite_store.search.text(big, "meeting notes", 100, MemoryFilter())) == 57
    # A user below the cap keeps every term.
    assert len(await sqlite_store.search.text(small, "sailing meeting", 100, MemoryFilter())) == 15
    monkeypatch.setattr(sqlite_search, "COMMON_TERM_ROWS", 1000)
    hits = await sqlite_store.search.text(big, "sailing meetings", 100, MemoryFilter())
    assert len(hits) == 60


def test_fts_query_quotes_every_term() -> None:
    assert fts_query("What did Ana say about Lisbon?") == '"ana" OR "say" OR "lisbon"'
    assert fts_query('a" OR text:* NEAR(') == '"text" OR "near"'
    assert fts_query("the of") == '"the" OR "of"'  # only stop words: keep them
    assert fts_query("  !?  ") is None
    assert fts_query("Ünïcode café") == '"ünïcode" OR "café"'
    many = fts_query(" ".join(f"w{i}" for i in range(100)))
    assert many is not None and many.count(" OR ") == 31


async def test_vector_cache_matches_the_database_after_concurrent_churn(
    sqlite_store: SqliteGraphStore,
) -> None:
    user = new_user()
    rnd = random.Random(5)
    live: list[str] = []

    async def writer() -> None:
        for b in range(30):
            res = await put(
                sqlite_store, user, [episode(f"w{b}-{i}", f"w {b} {i}") for i in range(5)]
            )
            live.extend(r.episode_id for r in res)
            if live and rnd.random() < 0.5:
                await sqlite_store.memories.delete(user, live.pop(rnd.randrange(len(live))))

    async def searcher() -> None:
        for _ in range(60):
            await sqlite_store.search.vector(user, unit().reshape(1, -1), 3, MemoryFilter())
            if rnd.random() < 0.2:
                # force reloads racing with the writer
                sqlite_store.vector_cache.evict((user.tenant, user.user_id))
            await asyncio.sleep(0)

    await asyncio.gather(writer(), searcher(), searcher())
    await sqlite_store.search.vector(user, unit().reshape(1, -1), 3, MemoryFilter())
    entry = sqlite_store.vector_cache.get((user.tenant, user.user_id), lambda: None)
    assert entry is not None
    conn = sqlite3.connect(sqlite_store.path)
    try:
        key = conn.execute("SELECT key FROM users WHERE tenant = ?", (user.tenant,)).fetchone()[0]
        fresh = load_user_vectors(conn, key, DIM)
    finally:
        conn.close()
    assert sorted(entry.ids[: entry.n]) == sorted(fresh.ids[: fresh.n]) == sorted(live)
    for memory_id, i in entry.pos.items():
        np.testing.assert_array_equal(entry.matrix[i], fresh.matrix[fresh.pos[memory_id]])


async def test_vector_cache_is_bounded(tmp_path: Path) -> None:
    s = SqliteGraphStore(tmp_path / "p.db", vector_cache_bytes=200_000)
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        users = [new_user() for _ in range(6)]
        for u in users:
            await put(s, u, [episode(f"s{i}", f"t {i}") for i in range(300)], vectors=units(300))
            await s.search.vector(u, unit().reshape(1, -1), 3, MemoryFilter())
        assert s.vector_cache.nbytes <= 200_000
        assert (users[-1].tenant, users[-1].user_id) in s.vector_cache
        assert (users[0].tenant, users[0].user_id) not in s.vector_cache
        # an evicted user reloads transparently
        hits = await s.search.vector(users[0], unit().reshape(1, -1), 3, MemoryFilter())
        assert len(hits) == 3
    finally:
        await s.close()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    from persona_server.ports.graph_store import StoreUnavailableError

    s = SqliteGraphStore(tmp_path / "p.db")
    await s.open(embedding_model=MODEL, dimension=DIM)
    await s.close()
    with pytest.raises(StoreUnavailableError):
        await s.users.exists(UserRef(tenant="t", user_id="u"))


def _row(memory_id: str, seed: int) -> VectorRow:
    return VectorRow(memory_id, "episode", 0, None, None, None, "{}", unit(seed))


def test_vector_cache_replays_changes_committed_during_a_load() -> None:
    cache = VectorCache(DIM, max_bytes=10_000_000)
    key = ("t", "u")

    def loader() -> UserVectors:
        snapshot = UserVectors(DIM)
        snapshot.apply(Change(upserts=[_row("a", 1), _row("b", 2)]))
        # The writer commits and applies while the load is still reading its snapshot.
        cache.apply(key, Change(removals=["a"], upserts=[_row("c", 3)]))
        return snapshot

    entry = cache.get(key, loader)
    assert entry is not None and sorted(entry.ids) == ["b", "c"]
    assert cache.get(key, lambda: None) is entry

    def loader_then_user_deleted() -> UserVectors:
        snapshot = UserVectors(DIM)
        snapshot.apply(Change(upserts=[_row("old", 4)]))
        cache.drop(key2)
        cache.apply(key2, Change(upserts=[_row("new", 5)]))
        return snapshot

    key2 = ("t", "v")
    entry2 = cache.get(key2, loader_then_user_deleted)
    assert entry2 is not None and entry2.ids == ["new"]


async def test_a_version_1_store_gains_cited_count_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    user = new_user()
    s = SqliteGraphStore(path)
    await s.open(embedding_model=MODEL, dimension=DIM)
    ep = episode("s1", "Alice likes tea.")
    await put(s, user, [ep])
    await s.close()
    # What a version-1 server left: no cited_count column, version 1 in meta.
    conn = sqlite3.connect(path)
    conn.execute("ALTER TABLE memories DROP COLUMN cited_count")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()

    s = SqliteGraphStore(path)
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        assert (await s.memories.get_many(user, [ep.id]))[ep.id].cited_count == 0
        assert await s.memories.reinforce(user, [ep.id], ep.recorded_at) == [ep.id]
        assert (await s.memories.get_many(user, [ep.id]))[ep.id].cited_count == 1
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()
    assert meta["schema_version"] == "2"


async def test_derived_writes_look_memories_up_by_id_not_by_scanning_the_user(
    sqlite_store: SqliteGraphStore,
) -> None:
    # Without statistics SQLite preferred scanning a covering (user_key, type, ...) index over
    # one unique look-up per id, so each derived write walked all of the user's rows and
    # Ingest slowed with the user's size. Every by-id read of a derived write must use the
    # (user_key, id) unique index, whatever else the schema offers.
    user = new_user()
    eps = [episode(f"s{i}", f"I met Ana at the lake {i}") for i in range(3)]
    written = await put(sqlite_store, user, eps)
    ana = entity("Ana")
    statements: list[str] = []

    def trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(statements.append)

    await sqlite_store._db.write(trace)
    try:
        for w in written:
            # The entity claims every episode so far: provenance ids are looked up too.
            carried = ana.model_copy(update={"episode_ids": [x.episode_id for x in written]})
            await sqlite_store.memories.write_derived(
                user, DerivedWrite(w.episode_id, [carried], by_id([carried], units(1)), [ana.id])
            )
    finally:
        await sqlite_store._db.write(lambda conn: conn.set_trace_callback(None))
    by_ids = [s for s in statements if " id IN (" in s and "FROM memories" in s]
    # The three look-ups of a derived write: existing memories, claimed episodes, mentions.
    assert any("type = 'episode'" in s for s in by_ids)
    assert any("type = 'entity'" in s for s in by_ids)
    assert any("type =" not in s for s in by_ids)
    conn = sqlite3.connect(sqlite_store.path)
    try:
        for sql in by_ids:
            plan = " ".join(r[3] for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}"))
            assert "sqlite_autoindex_memories_1 (user_key=? AND id=?)" in plan, (sql, plan)
    finally:
        conn.close()
