"""The store conformance suite's fixtures: every test runs once per store kind.

A new store kind joins by adding a param to `store_kind` and a branch to `store_factory`.
Tests isolate themselves by using fresh tenants (`new_user`), so a shared database is fine.

Neo4j (marked `neo4j`) runs against the server the harness starts, or against
PERSONA_NEO4J_URI (+ PERSONA_NEO4J_USER, PERSONA_NEO4J_PASSWORD, PERSONA_NEO4J_DATABASE) when
set. The suite shares that database across tests; it is wiped only when it was built for
another embedding model or dimension (other test modules use real 384-d embeddings).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from persona_server.adapters.stores.neo4j import Neo4jGraphStore
from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import GraphStore
from tests.neo4j_plugin import Neo4jTarget, stored_embedding, wipe_database

from .helpers import DIM, MODEL, new_user

StoreFactory = Callable[[], GraphStore]


@pytest.fixture(params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def store_factory(store_kind: str, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Builds an unopened store over the same data each time it is called (for reopen tests)."""
    if store_kind == "sqlite":
        return lambda: SqliteGraphStore(tmp_path / "persona.db")
    if store_kind == "neo4j":
        # Resolved here rather than as fixture arguments, so sqlite runs never start Neo4j.
        target = request.getfixturevalue("neo4j_store_target")
        return lambda: neo4j_store(target)
    raise AssertionError(f"unknown store kind {store_kind}")


def neo4j_store(target: Neo4jTarget, **options: Any) -> Neo4jGraphStore:
    user, password = target.auth or ("neo4j", "")
    return Neo4jGraphStore(target.uri, user, password, target.database, **options)


@pytest.fixture
def neo4j_store_target(neo4j_uri: str, neo4j_auth: tuple[str, str] | None) -> Neo4jTarget:
    database = os.environ.get("PERSONA_NEO4J_DATABASE") or "neo4j"
    target = Neo4jTarget(uri=neo4j_uri, auth=neo4j_auth, database=database)
    if _built_for_other_embedder(target):
        wipe_database(target)
    return target


def _built_for_other_embedder(target: Neo4jTarget) -> bool:
    return stored_embedding(target) not in (None, (MODEL, DIM))


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
