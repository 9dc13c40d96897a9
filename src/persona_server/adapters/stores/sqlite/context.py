"""State shared by the operation groups of one store; settled by `SqliteGraphStore.open`."""

from __future__ import annotations

from dataclasses import dataclass

from persona_server.adapters.stores.sqlite.connection import Database
from persona_server.adapters.stores.sqlite.vectors import VectorCache


@dataclass
class StoreContext:
    db: Database
    cache: VectorCache
    dimension: int = 0
    # Whether FTS5 removes a deleted row's terms at once (SQLite 3.42+), see schema.py.
    fts_secure_delete: bool = False
