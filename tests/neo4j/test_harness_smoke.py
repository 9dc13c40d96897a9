"""Smoke tests for the real-Neo4j test infrastructure (tests/neo4j_harness.py, neo4j_plugin.py).

They check what a Neo4j adapter will rely on: Bolt with the async driver, constraints, native
vector and full-text indexes, parameterised UNWIND writes, and an outage + restart that keeps the
data. (``tests`` is a package, so this folder is ``tests.neo4j`` and never shadows the driver.)
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from neo4j import AsyncDriver, AsyncGraphDatabase
from neo4j.exceptions import ServiceUnavailable

from tests.neo4j_harness import Neo4jProcess
from tests.neo4j_plugin import Neo4jTarget

pytestmark = pytest.mark.neo4j

DIMS = 384

SCHEMA = [
    "CREATE CONSTRAINT smoke_memory_id IF NOT EXISTS FOR (m:SmokeMemory) REQUIRE m.id IS UNIQUE",
    "CREATE VECTOR INDEX smoke_memory_embedding IF NOT EXISTS "
    "FOR (m:SmokeMemory) ON m.embedding "
    "OPTIONS {indexConfig: {`vector.dimensions`: $dims, `vector.similarity_function`: 'cosine'}}",
    "CREATE FULLTEXT INDEX smoke_memory_text IF NOT EXISTS FOR (m:SmokeMemory) ON EACH [m.text]",
]

TEXTS = [
    "Alice adopted a grey cat called Miso last spring",
    "Bob is training for the Berlin marathon in September",
    "Carol moved to Lisbon and works as a ceramic artist",
    "Dan prefers green tea over coffee in the morning",
    "Erin is learning to play the cello with a teacher",
]


def _unit_vectors(n: int, seed: int = 7) -> np.ndarray[Any, np.dtype[np.float64]]:
    vecs = np.random.default_rng(seed).normal(size=(n, DIMS))
    norms: np.ndarray[Any, np.dtype[np.float64]] = np.linalg.norm(vecs, axis=1, keepdims=True)
    return vecs / norms


@pytest.fixture
async def driver(neo4j_clean_db: Neo4jTarget) -> AsyncIterator[AsyncDriver]:
    drv = AsyncGraphDatabase.driver(
        neo4j_clean_db.uri,
        auth=neo4j_clean_db.auth,
        connection_timeout=5.0,
        connection_acquisition_timeout=10.0,
        max_transaction_retry_time=30.0,
    )
    try:
        await drv.verify_connectivity()
        yield drv
    finally:
        await drv.close()


async def _create_schema(driver: AsyncDriver) -> None:
    for statement in SCHEMA:
        await driver.execute_query(statement, dims=DIMS)


async def _write_memories(driver: AsyncDriver) -> np.ndarray[Any, np.dtype[np.float64]]:
    vectors = _unit_vectors(len(TEXTS))
    rows = [
        {"id": f"m{i}", "text": text, "embedding": vectors[i].tolist()}
        for i, text in enumerate(TEXTS)
    ]
    summary = (
        await driver.execute_query(
            "UNWIND $rows AS row "
            "MERGE (m:SmokeMemory {id: row.id}) "
            "SET m.text = row.text, m.embedding = row.embedding",
            rows=rows,
        )
    ).summary
    assert summary.counters.nodes_created == len(TEXTS)
    return vectors


async def test_bolt_server_info(driver: AsyncDriver) -> None:
    info = await driver.get_server_info()
    assert info.agent.startswith("Neo4j/5.")


async def test_constraint_vector_and_fulltext_indexes(driver: AsyncDriver) -> None:
    await _create_schema(driver)
    await _create_schema(driver)  # IF NOT EXISTS: idempotent
    vectors = await _write_memories(driver)
    await driver.execute_query("CALL db.awaitIndexes(120)")

    records, _, _ = await driver.execute_query(
        "SHOW INDEXES YIELD name, type, state WHERE name STARTS WITH 'smoke_' "
        "RETURN name, type, state ORDER BY name"
    )
    assert {r["name"]: (r["type"], r["state"]) for r in records} == {
        "smoke_memory_embedding": ("VECTOR", "ONLINE"),
        "smoke_memory_id": ("RANGE", "ONLINE"),
        "smoke_memory_text": ("FULLTEXT", "ONLINE"),
    }

    # Vector: a slightly perturbed copy of memory 2's embedding finds memory 2 first.
    noise = np.random.default_rng(1).normal(scale=0.01, size=DIMS)
    query = vectors[2] + noise
    records, _, _ = await driver.execute_query(
        "CALL db.index.vector.queryNodes('smoke_memory_embedding', $k, $vector) "
        "YIELD node, score RETURN node.id AS id, score",
        k=3,
        vector=query.tolist(),
    )
    assert records[0]["id"] == "m2"
    assert records[0]["score"] > 0.99
    assert len(records) == 3

    # Full-text: Lucene query syntax, best match first.
    records, _, _ = await driver.execute_query(
        "CALL db.index.fulltext.queryNodes('smoke_memory_text', $q) "
        "YIELD node, score RETURN node.id AS id, score",
        q="marathon OR cello^0.1",
    )
    assert [r["id"] for r in records][:2] == ["m1", "m4"]

    # The uniqueness constraint is enforced.
    with pytest.raises(Exception, match="already exists"):
        await driver.execute_query("CREATE (:SmokeMemory {id: 'm0'})")


async def test_clean_db_fixture_starts_empty(driver: AsyncDriver) -> None:
    records, _, _ = await driver.execute_query("MATCH (n) RETURN count(n) AS n")
    assert records[0]["n"] == 0
    records, _, _ = await driver.execute_query(
        "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
    )
    assert records == []


async def test_restart_keeps_data(driver: AsyncDriver, neo4j_restartable: Neo4jProcess) -> None:
    await _create_schema(driver)
    await _write_memories(driver)
    await driver.execute_query("CALL db.awaitIndexes(120)")
    port = neo4j_restartable.port

    t_stop = time.monotonic()
    neo4j_restartable.stop()
    print(f"neo4j stop with a connected driver: {time.monotonic() - t_stop:.1f}s")
    assert not neo4j_restartable.is_running()
    with pytest.raises(ServiceUnavailable):
        # A plain auto-commit run: execute_query would keep retrying for
        # max_transaction_retry_time before giving up.
        async with driver.session() as session:
            result = await session.run("RETURN 1 AS one")
            await result.consume()

    t0 = time.monotonic()
    neo4j_restartable.start()
    restart_s = time.monotonic() - t0
    assert neo4j_restartable.port == port
    print(f"neo4j restart to READY: {restart_s:.1f}s")

    # The same driver recovers (stale pooled connections are discarded and retried).
    records, _, _ = await driver.execute_query(
        "MATCH (m:SmokeMemory) RETURN m.id AS id ORDER BY id"
    )
    assert [r["id"] for r in records] == [f"m{i}" for i in range(len(TEXTS))]
    records, _, _ = await driver.execute_query(
        "CALL db.index.fulltext.queryNodes('smoke_memory_text', 'Lisbon') "
        "YIELD node RETURN node.id AS id"
    )
    assert [r["id"] for r in records] == ["m2"]
    records, _, _ = await driver.execute_query(
        "SHOW INDEXES YIELD name, state WHERE name = 'smoke_memory_embedding' RETURN state"
    )
    assert records[0]["state"] == "ONLINE"


async def test_crash_recovery_keeps_committed_data(
    driver: AsyncDriver, neo4j_restartable: Neo4jProcess
) -> None:
    await driver.execute_query("UNWIND range(1, 50) AS i CREATE (:SmokeCrash {i: i})")
    neo4j_restartable.kill()  # SIGKILL: no checkpoint, recovery from the transaction log
    neo4j_restartable.start()
    records, _, _ = await driver.execute_query("MATCH (n:SmokeCrash) RETURN count(n) AS n")
    assert records[0]["n"] == 50
