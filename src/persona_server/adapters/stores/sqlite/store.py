"""`SqliteGraphStore`: the embedded `GraphStore`, one SQLite file in WAL mode."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from persona_server.adapters.stores.sqlite.changes import SqliteChangeOps
from persona_server.adapters.stores.sqlite.connection import Database, write_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.sqlite.episodes import SqliteEpisodeOps
from persona_server.adapters.stores.sqlite.export import SqliteExportOps
from persona_server.adapters.stores.sqlite.knowledge import SqliteKnowledgeOps
from persona_server.adapters.stores.sqlite.memories import SqliteMemoryOps
from persona_server.adapters.stores.sqlite.schema import SCHEMA_VERSION, check_sqlite, create_schema
from persona_server.adapters.stores.sqlite.search import SqliteSearchOps
from persona_server.adapters.stores.sqlite.users import SqliteUserOps
from persona_server.adapters.stores.sqlite.vectors import VectorCache
from persona_server.ports.graph_store import (
    CHANGE_LOG_MAX_ENTRIES,
    ChangeOps,
    EmbeddingMismatchError,
    EpisodeOps,
    ExportOps,
    GraphStore,
    MemoryOps,
    SearchOps,
    StoreUnavailableError,
    UserOps,
)
from persona_server.ports.knowledge_store import KnowledgeOps

DEFAULT_VECTOR_CACHE_BYTES = 1 << 30


class SqliteGraphStore:
    """The default store: no server to run, ACID, readers never block the writer.

    `vector_cache_bytes` bounds the in-memory per-user matrices (about 1.6 KB per memory at 384
    dimensions); least recently searched users are evicted first and reload on their next search.
    """

    def __init__(
        self,
        path: Path,
        *,
        readers: int = 2,
        vector_cache_bytes: int = DEFAULT_VECTOR_CACHE_BYTES,
        change_log_max_entries: int = CHANGE_LOG_MAX_ENTRIES,
    ) -> None:
        if change_log_max_entries < 1:
            raise ValueError("change_log_max_entries must be at least 1")
        self.path = Path(path)
        self._db = Database(self.path, readers=readers)
        self._ctx = StoreContext(
            db=self._db,
            cache=VectorCache(0, vector_cache_bytes),
            change_log_max_entries=change_log_max_entries,
        )
        # Typed as the port's operation groups: GraphStore declares them as plain attributes,
        # and mypy checks those invariantly.
        self.episodes: EpisodeOps = SqliteEpisodeOps(self._ctx)
        self.memories: MemoryOps = SqliteMemoryOps(self._ctx)
        self.search: SearchOps = SqliteSearchOps(self._ctx, self.episodes, self.memories)
        self.users: UserOps = SqliteUserOps(self._ctx)
        self.changes: ChangeOps = SqliteChangeOps(self._db)
        self.export: ExportOps = SqliteExportOps(self._db)
        self.knowledge: KnowledgeOps = SqliteKnowledgeOps(self._ctx)

    @property
    def vector_cache(self) -> VectorCache:
        return self._ctx.cache

    async def open(self, *, embedding_model: str, dimension: int) -> None:
        if self._db.is_open:
            raise RuntimeError("store is already open")
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        check_sqlite()

        def init(conn: sqlite3.Connection) -> bool:
            secure_delete = create_schema(conn)
            with write_transaction(conn):
                _check_meta(conn, self.path, embedding_model, dimension)
            return secure_delete

        self._ctx.fts_secure_delete = await self._db.open(init)
        self._ctx.dimension = dimension
        self._ctx.cache.dimension = dimension

    async def close(self) -> None:
        await self._db.close()

    async def ping(self) -> bool:
        def run(conn: sqlite3.Connection) -> bool:
            return bool(conn.execute("SELECT 1").fetchone() == (1,))

        try:
            return await self._db.read(run)
        except (StoreUnavailableError, sqlite3.Error):
            return False


def _check_meta(conn: sqlite3.Connection, path: Path, model: str, dimension: int) -> None:
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    if "embedding_model" not in meta:
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", str(SCHEMA_VERSION)),
                ("embedding_model", model),
                ("embedding_dimension", str(dimension)),
                ("created_at", datetime.now(UTC).isoformat()),
            ],
        )
        return
    version = int(meta.get("schema_version", "0"))
    if version > SCHEMA_VERSION:
        raise StoreUnavailableError(
            f"{path} has schema version {version}; this server knows up to {SCHEMA_VERSION}"
        )
    if version < SCHEMA_VERSION:  # create_schema migrated the tables already
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
        )
    stored_model, stored_dim = meta["embedding_model"], int(meta["embedding_dimension"])
    if stored_model != model or stored_dim != dimension:
        raise EmbeddingMismatchError(
            f"the store at {path} was built with embedding model {stored_model!r} "
            f"(dimension {stored_dim}), but the configured model is {model!r} "
            f"(dimension {dimension}); configure {stored_model!r} again, or use a new data "
            "directory and re-ingest"
        )


def _conforms(store: SqliteGraphStore) -> GraphStore:
    return store  # mypy proves SqliteGraphStore implements the GraphStore protocol
