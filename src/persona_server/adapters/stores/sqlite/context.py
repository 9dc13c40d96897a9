"""State shared by the operation groups of one store; settled by `SqliteGraphStore.open`."""

from __future__ import annotations

from dataclasses import dataclass

from persona_server.adapters.stores.sqlite.connection import Database
from persona_server.adapters.stores.sqlite.vectors import VectorCache
from persona_server.ports.graph_store import CHANGE_LOG_MAX_ENTRIES


@dataclass
class StoreContext:
    db: Database
    cache: VectorCache
    dimension: int = 0
    # Whether FTS5 removes a deleted row's terms at once (SQLite 3.42+), see schema.py.
    fts_secure_delete: bool = False
    # Each user's change log keeps this many newest entries (ChangeLog).
    change_log_max_entries: int = CHANGE_LOG_MAX_ENTRIES
