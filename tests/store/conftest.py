"""The store conformance suite's fixtures: every test runs once per store kind.

A new store kind joins by adding a param to `store_factory` (Neo4j: start the harness or read
PERSONA_NEO4J_URI). Tests isolate themselves by using fresh tenants (`new_user`), so a shared
database is fine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import GraphStore

from .helpers import DIM, MODEL, new_user

StoreFactory = Callable[[], GraphStore]


@pytest.fixture(params=["sqlite"])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(store_kind: str, tmp_path: Path) -> StoreFactory:
    """Builds an unopened store over the same data each time it is called (for reopen tests)."""
    if store_kind == "sqlite":
        return lambda: SqliteGraphStore(tmp_path / "persona.db")
    raise AssertionError(f"unknown store kind {store_kind}")


@pytest.fixture
async def store(store_factory: StoreFactory) -> AsyncIterator[GraphStore]:
    s = store_factory()
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def user() -> UserRef:
    return new_user()
