"""The embedded store on SQLite (the default store): see `store.SqliteGraphStore`."""

from persona_server.adapters.stores.sqlite.store import SqliteGraphStore

__all__ = ["SqliteGraphStore"]
