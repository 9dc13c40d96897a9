"""DDL of the embedded store and the checks run before it is used.

Layout choices:
- `users` maps (tenant, user_id) to an integer key that every other table carries. Indexes stay
  small, a user's rows are one key range, and the key doubles as the FTS owner token that keeps a
  full-text match inside one user at the index level.
- Times are INTEGER microseconds since the Unix epoch (UTC): they sort, compare and load into
  numpy without parsing.
- The NEXT chain is not materialised: it is the order of the (user_key, chain_at, seq) index over
  episodes, so a back-filled episode lands in place with no relinking.
- `memories_fts` is an ordinary FTS5 table (it keeps its own copy of the text) kept in step by
  triggers, so a delete through any path, including FK cascades, removes the index entries.
"""

from __future__ import annotations

import sqlite3

from persona_server.adapters.stores.sqlite.knowledge import KNOWLEDGE_SCHEMA

# 2: memories.cited_count (AskStructured citations, for strength); added by `migrate`.
SCHEMA_VERSION = 2

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS users (
    key         INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant      TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    episode_seq INTEGER NOT NULL DEFAULT 0,
    change_seq  INTEGER NOT NULL DEFAULT 0,
    UNIQUE (tenant, user_id)
);

-- Which process extracts a user's episodes until when (UserOps.lease_extraction).
CREATE TABLE IF NOT EXISTS extraction_leases (
    user_key INTEGER PRIMARY KEY REFERENCES users(key),
    owner    TEXT NOT NULL,
    until    INTEGER NOT NULL
);

CREATE TABLE IF NOT EXISTS memories (
    rowid              INTEGER PRIMARY KEY,
    user_key           INTEGER NOT NULL REFERENCES users(key),
    id                 TEXT NOT NULL,
    type               TEXT NOT NULL,
    text               TEXT NOT NULL,
    occurred_at        INTEGER,
    recorded_at        INTEGER NOT NULL,
    valid_from         INTEGER,
    invalid_at         INTEGER,
    mention_count      INTEGER NOT NULL DEFAULT 1,
    cited_count        INTEGER NOT NULL DEFAULT 0,
    last_reinforced_at INTEGER,
    metadata           TEXT NOT NULL DEFAULT '{}',
    payload            TEXT NOT NULL DEFAULT '{}',
    merge_key          TEXT,
    subject_id         TEXT,
    object_id          TEXT,
    source_id          TEXT,
    seq                INTEGER,
    chain_at           INTEGER,
    extraction         TEXT,
    extraction_due     INTEGER,
    UNIQUE (user_key, id)
);

CREATE UNIQUE INDEX IF NOT EXISTS memories_source
    ON memories (user_key, source_id) WHERE source_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_chain
    ON memories (user_key, chain_at, seq) WHERE type = 'episode';
-- Episodes in ingest order (export pages).
CREATE INDEX IF NOT EXISTS memories_seq
    ON memories (user_key, seq) WHERE type = 'episode';
CREATE INDEX IF NOT EXISTS memories_recorded
    ON memories (user_key, recorded_at, id);
CREATE INDEX IF NOT EXISTS memories_due
    ON memories (extraction_due) WHERE extraction_due IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_merge_key
    ON memories (user_key, type, merge_key) WHERE merge_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_subject
    ON memories (user_key, subject_id) WHERE subject_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS memories_object
    ON memories (user_key, object_id) WHERE object_id IS NOT NULL;
-- The bounded reads of MemoryOps.ranked (the profile): each walks one index backwards from the
-- user's best entry and stops at its limit.
CREATE INDEX IF NOT EXISTS memories_type_recorded
    ON memories (user_key, type, recorded_at, id);
CREATE INDEX IF NOT EXISTS memories_mentions
    ON memories (user_key, type, mention_count, recorded_at, id) WHERE invalid_at IS NULL;
CREATE INDEX IF NOT EXISTS memories_goal_status
    ON memories (user_key, json_extract(payload, '$.status'), recorded_at, id)
    WHERE type = 'goal';

CREATE TABLE IF NOT EXISTS vectors (
    memory_rowid INTEGER PRIMARY KEY REFERENCES memories(rowid) ON DELETE CASCADE,
    vector       BLOB NOT NULL
);

CREATE TABLE IF NOT EXISTS provenance (
    memory_rowid  INTEGER NOT NULL REFERENCES memories(rowid) ON DELETE CASCADE,
    episode_rowid INTEGER NOT NULL REFERENCES memories(rowid) ON DELETE CASCADE,
    PRIMARY KEY (memory_rowid, episode_rowid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS provenance_episode ON provenance (episode_rowid);

CREATE TABLE IF NOT EXISTS mentions (
    episode_rowid INTEGER NOT NULL REFERENCES memories(rowid) ON DELETE CASCADE,
    entity_rowid  INTEGER NOT NULL REFERENCES memories(rowid) ON DELETE CASCADE,
    PRIMARY KEY (episode_rowid, entity_rowid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS mentions_entity ON mentions (entity_rowid);

CREATE TABLE IF NOT EXISTS entity_names (
    user_key     INTEGER NOT NULL,
    name         TEXT NOT NULL,
    entity_rowid INTEGER NOT NULL REFERENCES memories(rowid) ON DELETE CASCADE,
    PRIMARY KEY (user_key, name, entity_rowid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entity_names_entity ON entity_names (entity_rowid);

CREATE TABLE IF NOT EXISTS changes (
    user_key    INTEGER NOT NULL REFERENCES users(key),
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    memory_id   TEXT NOT NULL,
    memory_type TEXT NOT NULL,
    at          INTEGER NOT NULL,
    PRIMARY KEY (user_key, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS changes_at ON changes (at);

-- An episode is indexed with its speaker ("Caroline: ..."): who said it is part of what it means,
-- and questions name people.
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts
    USING fts5(text, owner, tokenize = 'porter unicode61');

-- How many rows hold each (stemmed) term: full-text search leaves out the terms too common to
-- be worth scoring in a big store (search.py). A view over the index: it stores nothing.
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts_vocab USING fts5vocab(memories_fts, 'row');

CREATE TRIGGER IF NOT EXISTS memories_fts_insert AFTER INSERT ON memories BEGIN
    INSERT INTO memories_fts (rowid, text, owner)
        VALUES (
            new.rowid,
            trim(coalesce(json_extract(new.payload, '$.speaker'), '') || ' ' || new.text),
            'u' || new.user_key
        );
END;
CREATE TRIGGER IF NOT EXISTS memories_fts_delete AFTER DELETE ON memories BEGIN
    DELETE FROM memories_fts WHERE rowid = old.rowid;
END;
CREATE TRIGGER IF NOT EXISTS memories_fts_update AFTER UPDATE OF text ON memories
    WHEN new.text IS NOT old.text BEGIN
    UPDATE memories_fts
        SET text = trim(coalesce(json_extract(new.payload, '$.speaker'), '') || ' ' || new.text)
        WHERE rowid = old.rowid;
END;
"""


def check_sqlite() -> None:
    """Fail early, with the reason, on an SQLite build this store cannot run on."""
    probe = sqlite3.connect(":memory:")
    try:
        probe.execute("CREATE VIRTUAL TABLE probe USING fts5(x, tokenize = 'porter unicode61')")
    except sqlite3.OperationalError as exc:
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} was built without FTS5, which the embedded store "
            "needs for full-text search"
        ) from exc
    finally:
        probe.close()
    if sqlite3.sqlite_version_info < (3, 35, 0):
        raise RuntimeError(
            f"SQLite {sqlite3.sqlite_version} is too old for the embedded store (needs 3.35+)"
        )


def create_schema(conn: sqlite3.Connection) -> bool:
    """Create tables idempotently. Returns whether FTS5 secure-delete is on.

    secure-delete (SQLite 3.42+) removes a deleted row's terms from the inverted index at once;
    without it they linger in old segments until a merge, so user deletion runs an 'optimize'.
    """
    conn.executescript(SCHEMA)
    conn.executescript(KNOWLEDGE_SCHEMA)
    migrate(conn)
    try:
        conn.execute("INSERT INTO memories_fts (memories_fts, rank) VALUES ('secure-delete', 1)")
    except sqlite3.OperationalError:
        return False
    return True


def migrate(conn: sqlite3.Connection) -> None:
    """Bring a store written by an older server to the current layout (idempotent). The
    version in `meta` follows in `_check_meta`, in the same start-up."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(memories)")}
    if "cited_count" not in columns:  # version 1 -> 2
        conn.execute("ALTER TABLE memories ADD COLUMN cited_count INTEGER NOT NULL DEFAULT 0")
