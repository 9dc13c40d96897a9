"""pytest plugin: a real Neo4j 5 for tests marked ``@pytest.mark.neo4j``.

Register it once in the top-level ``conftest.py`` (the one in the repository root)::

    pytest_plugins = ["tests.neo4j_plugin"]

Fixtures:

* ``neo4j_server`` (session): the :class:`Neo4jProcess` started for this session, or ``None``
  when ``PERSONA_NEO4J_URI`` points at an external server.
* ``neo4j_restartable`` (function): the same process, for outage tests that ``stop()``,
  ``kill()`` or ``restart()`` it (same port and data); it is running again after the test.
  Skips with an external server.
* ``neo4j_uri`` / ``neo4j_auth`` (session): where to connect; ``neo4j_auth`` is ``None`` for the
  launcher (auth disabled) or ``(PERSONA_NEO4J_USER, PERSONA_NEO4J_PASSWORD)``.
* ``neo4j_clean_db`` (function): wipes the default database (all nodes, constraints and
  indexes except the built-in token lookups) before the test; returns a :class:`Neo4jTarget`.

Environment:

* ``PERSONA_NEO4J_URI`` (+ ``PERSONA_NEO4J_USER`` / ``PERSONA_NEO4J_PASSWORD``): use that server
  instead of starting one. **Its default database is wiped by ``neo4j_clean_db``.**
* ``PERSONA_NEO4J_JVM_OPTS``, ``PERSONA_NEO4J_MAVEN_ARGS``: see ``tests/neo4j_harness.py``.
* ``PERSONA_NEO4J_KEEP_DATA``: set it to keep the server's folder (data, ``launcher.log``).

Nothing is built or started unless a selected test uses these fixtures; the Maven build (which
may download ~190 MB on an empty ``~/.m2``) runs right after collection when a ``neo4j`` test is
selected, so it is not charged to a test's timeout.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.neo4j_harness import Neo4jHarnessError, Neo4jProcess, build_launcher

ENV_URI = "PERSONA_NEO4J_URI"
ENV_USER = "PERSONA_NEO4J_USER"
ENV_PASSWORD = "PERSONA_NEO4J_PASSWORD"


@dataclass(frozen=True)
class Neo4jTarget:
    uri: str
    auth: tuple[str, str] | None
    database: str = "neo4j"


def _external_uri() -> str | None:
    return os.environ.get(ENV_URI) or None


def _external_auth() -> tuple[str, str] | None:
    user = os.environ.get(ENV_USER)
    if user is None:
        return None
    return (user, os.environ.get(ENV_PASSWORD, ""))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build the launcher jar before any test runs, if a selected test needs Neo4j."""
    if _external_uri() is not None or session.config.option.collectonly:
        return
    if any(item.get_closest_marker("neo4j") is not None for item in session.items):
        try:
            build_launcher()
        except Neo4jHarnessError as exc:
            raise pytest.UsageError(str(exc)) from exc


@pytest.fixture(scope="session")
def neo4j_server() -> Iterator[Neo4jProcess | None]:
    if _external_uri() is not None:
        yield None
        return
    build_launcher()
    base = Path(tempfile.mkdtemp(prefix="persona-neo4j-"))
    server = Neo4jProcess(base)
    try:
        server.start()
    except Neo4jHarnessError:
        server.stop()
        raise
    try:
        yield server
    finally:
        server.stop()
        if os.environ.get("PERSONA_NEO4J_KEEP_DATA") is None:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def neo4j_uri(neo4j_server: Neo4jProcess | None) -> str:
    if neo4j_server is None:
        uri = _external_uri()
        assert uri is not None
        return uri
    return neo4j_server.uri


@pytest.fixture(scope="session")
def neo4j_auth(neo4j_server: Neo4jProcess | None) -> tuple[str, str] | None:
    return _external_auth() if neo4j_server is None else None


@pytest.fixture
def neo4j_restartable(neo4j_server: Neo4jProcess | None) -> Iterator[Neo4jProcess]:
    """The session's server, for tests that stop/kill/restart it; it is up again afterwards.

    Skips when ``PERSONA_NEO4J_URI`` points at an external server (it cannot be restarted).
    """
    if neo4j_server is None:
        pytest.skip(f"{ENV_URI} is set: an external Neo4j cannot be restarted by the tests")
    try:
        yield neo4j_server
    finally:
        if not neo4j_server.is_running():
            neo4j_server.start()


def wipe_database(target: Neo4jTarget) -> None:
    """Delete every node and relationship, and drop constraints and non-lookup indexes."""
    from neo4j import GraphDatabase

    with (
        GraphDatabase.driver(target.uri, auth=target.auth) as driver,
        driver.session(database=target.database) as session,
    ):
        session.run("MATCH (n) DETACH DELETE n").consume()
        for record in session.run("SHOW CONSTRAINTS YIELD name RETURN name").data():
            session.run(f"DROP CONSTRAINT {_quote(record['name'])} IF EXISTS").consume()
        indexes = session.run(
            "SHOW INDEXES YIELD name, type WHERE type <> 'LOOKUP' RETURN name"
        ).data()
        for record in indexes:
            session.run(f"DROP INDEX {_quote(record['name'])} IF EXISTS").consume()


def stored_embedding(target: Neo4jTarget) -> tuple[str, int] | None:
    """The embedding model and dimension the database was built with (None: not built)."""
    from neo4j import GraphDatabase

    with (
        GraphDatabase.driver(target.uri, auth=target.auth) as driver,
        driver.session(database=target.database) as session,
    ):
        record = session.run(
            "OPTIONAL MATCH (meta:PersonaMeta {key: 'store'}) "
            "RETURN meta.embedding_model AS model, meta.embedding_dimension AS dimension"
        ).single(strict=True)
    return None if record["model"] is None else (record["model"], record["dimension"])


def server_settings(target: Neo4jTarget) -> dict[str, Any]:
    """The `Settings` overrides of a Persona server on `target`."""
    user, password = target.auth or ("neo4j", "")
    return {
        "store": "neo4j",
        "neo4j_uri": target.uri,
        "neo4j_user": user,
        "neo4j_password": password,
        "neo4j_database": target.database,
    }


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


@pytest.fixture
def neo4j_clean_db(neo4j_uri: str, neo4j_auth: tuple[str, str] | None) -> Neo4jTarget:
    target = Neo4jTarget(uri=neo4j_uri, auth=neo4j_auth)
    wipe_database(target)
    return target
