"""How the Neo4j adapter maps driver errors to the port (no server needed)."""

from __future__ import annotations

from neo4j.exceptions import ClientError, ServiceUnavailable

from persona_server.adapters.stores.neo4j.driver import Connection
from persona_server.ports.graph_store import StoreUnavailableError


def _client_error() -> ClientError:
    return ClientError("Invalid input")


def _index_query_failed() -> ClientError:
    # What Neo4j answers for a full-text query whose index is gone (a database that came
    # back empty after an outage, unnoticed: the driver's retries hid the outage).
    exc = ClientError("There is no such fulltext schema index: persona_memory_text")
    exc._neo4j_code = "Neo.ClientError.Procedure.ProcedureCallFailed"  # type: ignore[attr-defined]
    return exc


def test_a_server_error_is_a_real_error_normally() -> None:
    conn = Connection("bolt://127.0.0.1:1", None, "neo4j")
    assert conn._failed(_client_error()) is None


def test_a_server_error_while_the_schema_is_restored_is_unavailable() -> None:
    conn = Connection("bolt://127.0.0.1:1", None, "neo4j")
    conn.schema_pending = True
    mapped = conn._failed(_client_error())
    assert isinstance(mapped, StoreUnavailableError)
    assert "schema" in str(mapped)


def test_an_outage_is_unavailable_either_way() -> None:
    conn = Connection("bolt://127.0.0.1:1", None, "neo4j")
    assert isinstance(conn._failed(ServiceUnavailable("gone")), StoreUnavailableError)
    assert conn.reachable is False


def test_a_failed_index_query_starts_a_schema_check_and_is_unavailable() -> None:
    conn = Connection("bolt://127.0.0.1:1", None, "neo4j")
    told: list[bool] = []

    def outage() -> None:
        told.append(True)
        conn.schema_pending = True  # what the store does (Neo4jGraphStore._outage)

    conn.on_outage = outage
    assert isinstance(conn._failed(_index_query_failed()), StoreUnavailableError)
    assert told == [True]
