"""`Neo4jGraphStore`: the production `GraphStore` on Neo4j 5 (server, cluster or Aura).

Graph: one node per memory, labelled `:Memory` plus its type (`:Episode`, `:Psyche`, `:Goal`,
`:Entity`, `:Fact`); `NEXT` between a user's episodes in event-time order (chain.py);
`MENTIONS` from an episode to the entities it names; `DERIVED_FROM` from a derived memory to its
episodes (provenance); `SUBJECT` / `OBJECT` from a fact to its entities. `:PersonaUser` holds a
user's counters and write lock, `:PersonaChange` the change log, `:PersonaMeta` the embedding
model the data was built with, `:PersonaKnowledgeSchema` / `:PersonaKnowledgeDocument` a
tenant's knowledge schemas and its users' documents (knowledge.py). Every node but the meta
node carries `tenant`, and every one but the meta node and the (tenant-wide) knowledge schemas
`user_id`; every lookup matches both, and relationships only ever join nodes of one user.

Cypher is parameterised only: every statement is a constant string in this package, labels and
relationship types are written in those constants, and values (user text included) travel as
parameters. Writes are batched with UNWIND, one managed transaction per port call.

Search trade-offs (native vector index versus the per-replica exact cache, Lucene scoring) are
described in search.py and vectors.py; outages and retries in driver.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from persona_server.adapters.stores.neo4j.changes import Neo4jChangeOps
from persona_server.adapters.stores.neo4j.driver import (
    DEFAULT_CONNECTION_TIMEOUT_S,
    DEFAULT_MAX_RETRY_TIME_S,
    DEFAULT_PING_TIMEOUT_S,
    DEFAULT_POOL_SIZE,
    Connection,
)
from persona_server.adapters.stores.neo4j.episodes import Neo4jEpisodeOps
from persona_server.adapters.stores.neo4j.export import Neo4jExportOps
from persona_server.adapters.stores.neo4j.knowledge import Neo4jKnowledgeOps
from persona_server.adapters.stores.neo4j.memories import Neo4jMemoryOps
from persona_server.adapters.stores.neo4j.schema import ensure_schema
from persona_server.adapters.stores.neo4j.search import Neo4jSearchOps
from persona_server.adapters.stores.neo4j.users import Neo4jUserOps
from persona_server.adapters.stores.neo4j.vectors import DEFAULT_MAX_BYTES, VectorCache
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

log = logging.getLogger(__name__)


class Neo4jGraphStore:
    """One driver (and connection pool) per store; open once per process."""

    def __init__(
        self,
        uri: str,
        user: str = "neo4j",
        password: str = "",
        database: str = "neo4j",
        *,
        max_pool_size: int = DEFAULT_POOL_SIZE,
        connection_timeout_s: float = DEFAULT_CONNECTION_TIMEOUT_S,
        max_retry_time_s: float = DEFAULT_MAX_RETRY_TIME_S,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
        vector_cache_bytes: int = DEFAULT_MAX_BYTES,
        change_log_max_entries: int = CHANGE_LOG_MAX_ENTRIES,
    ) -> None:
        if change_log_max_entries < 1:
            raise ValueError("change_log_max_entries must be at least 1")
        # An empty password means a server without authentication (the test harness).
        auth = (user, password) if password else None
        self._conn = Connection(
            uri,
            auth,
            database,
            max_pool_size=max_pool_size,
            connection_timeout_s=connection_timeout_s,
            max_retry_time_s=max_retry_time_s,
            ping_timeout_s=ping_timeout_s,
        )
        self._conn.on_outage = self._outage
        self._cache = VectorCache(self._conn, vector_cache_bytes)
        self._episodes = Neo4jEpisodeOps(self._conn, change_log_max_entries=change_log_max_entries)
        self._memories = Neo4jMemoryOps(self._conn, change_log_max_entries=change_log_max_entries)
        self._search = Neo4jSearchOps(self._conn, self._cache)
        # Typed as the port's operation groups: GraphStore declares them as plain attributes.
        self.episodes: EpisodeOps = self._episodes
        self.memories: MemoryOps = self._memories
        self.search: SearchOps = self._search
        self.users: UserOps = Neo4jUserOps(self._conn)
        self.changes: ChangeOps = Neo4jChangeOps(self._conn)
        self.export: ExportOps = Neo4jExportOps(self._conn)
        self.knowledge: KnowledgeOps = Neo4jKnowledgeOps(self._conn)
        self._model = ""
        self._dimension = 0
        # The schema is known to be in place; cleared by an outage, restored by `ping`.
        self._schema_ready = False
        self._schema_task: asyncio.Task[None] | None = None

    @property
    def uri(self) -> str:
        return self._conn.uri

    @property
    def database(self) -> str:
        return self._conn.database

    @property
    def vector_cache(self) -> VectorCache:
        return self._cache

    async def open(self, *, embedding_model: str, dimension: int) -> None:
        if self._conn.is_open:
            raise RuntimeError("store is already open")
        if dimension <= 0:
            raise ValueError("dimension must be positive")
        self._conn.open()
        try:
            await ensure_schema(self._conn, model=embedding_model, dimension=dimension)
        except BaseException:
            await self._conn.close()
            raise
        self._model, self._dimension = embedding_model, dimension
        self._episodes.dimension = self._memories.dimension = dimension
        self._search.dimension = self._cache.dimension = dimension
        self._schema_ready = True

    async def close(self) -> None:
        task, self._schema_task = self._schema_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._schema_ready = False
        self._cache.clear()
        await self._conn.close()

    async def ping(self) -> bool:
        """True when Neo4j answers and the schema is known to be in place.

        After an outage the first successful round trip starts re-creating any missing
        constraints and indexes (and re-checks the embedding model) in the background; the
        store reports healthy once that has finished, so a load balancer only sends traffic
        to a replica whose indexes are online.
        """
        if not await self._conn.ping():
            return False
        if self._schema_ready:
            return True
        if self._schema_task is None or self._schema_task.done():
            self._schema_task = asyncio.create_task(self._restore_schema())
        return False

    def _outage(self) -> None:
        self._conn.schema_pending = True
        if self._schema_ready:
            self._schema_ready = False

    async def _restore_schema(self) -> None:
        try:
            await ensure_schema(self._conn, model=self._model, dimension=self._dimension)
        except (StoreUnavailableError, EmbeddingMismatchError) as exc:
            log.error("Neo4j schema check after an outage failed", extra={"error": str(exc)})
            return
        except Exception:
            log.exception("Neo4j schema check after an outage failed")
            return
        # The database may be another one than before the outage (failed over, restored from
        # a backup): start the vector cache afresh rather than trust what it holds.
        self._cache.clear()
        self._schema_ready = True
        self._conn.schema_pending = False
        log.warning("Neo4j reachable again; schema verified")


def _conforms(store: Neo4jGraphStore) -> GraphStore:
    return store  # mypy proves Neo4jGraphStore implements the GraphStore protocol
