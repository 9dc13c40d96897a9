"""Hostile input on every RPC, on both stores: only documented status codes, a field named in
every INVALID_ARGUMENT, and nothing written for a rejected request (nor by any read).

Each RPC gets generated requests (see `strategies.py`) through the raw generated stub, so that
values the SDK would refuse locally reach the server. The number of examples is bounded in the
test command (hypothesis profile "ci", derandomised); a longer, random run is on demand:

    .venv/bin/pytest tests/hostile --hypothesis-profile=long
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given
from hypothesis import strategies as st

from persona.v1 import knowledge_pb2 as kpb
from persona.v1 import memory_service_pb2 as svc
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from tests.hostile import strategies as hs
from tests.neo4j_plugin import Neo4jTarget, server_settings, wipe_database
from tests.threaded_app import ThreadedApp
from tests.transport.transport_settings import KEY_A, make_settings

SERVICE = "/persona.v1.MemoryService/"
AUTH = (("x-api-key", KEY_A),)
CALL_TIMEOUT_S = 60.0
Fingerprint = Callable[[], tuple[int, ...]]

C = grpc.StatusCode
# What each RPC may answer to any input. RESOURCE_EXHAUSTED is grpc's answer to a message over
# the size limit. Never INTERNAL or UNKNOWN; never UNAVAILABLE or DEADLINE_EXCEEDED either, as
# the store is up and no input may make a call hang.
ALWAYS = {C.OK, C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED}


@dataclass(frozen=True, repr=False)
class Rpc:
    name: str
    requests: st.SearchStrategy[Message]
    allowed: frozenset[grpc.StatusCode]
    writes: bool = False  # a successful call may write
    stream: bool = False  # server streaming: the response stream is read to its end
    client_stream: bool = False  # the request is a list of messages

    def __repr__(self) -> str:
        return self.name


RPCS = [
    Rpc("Ingest", hs.ingest_requests(), frozenset(ALWAYS | {C.ALREADY_EXISTS}), writes=True),
    Rpc("Recall", hs.recall_requests(), frozenset(ALWAYS)),
    # Offline there is no LLM: a valid request is FAILED_PRECONDITION.
    Rpc("AskStructured", hs.ask_requests(), frozenset(ALWAYS | {C.FAILED_PRECONDITION})),
    Rpc("StreamContext", hs.stream_requests(), frozenset(ALWAYS | {C.OUT_OF_RANGE}), stream=True),
    Rpc("GetMemory", hs.get_requests(), frozenset(ALWAYS | {C.NOT_FOUND})),
    Rpc("ListMemories", hs.list_requests(), frozenset(ALWAYS)),
    Rpc("GetProfile", hs.profile_requests(), frozenset(ALWAYS)),
    Rpc("DeleteMemory", hs.delete_memory_requests(), frozenset(ALWAYS | {C.NOT_FOUND}), True),
    Rpc("DeleteUser", hs.delete_user_requests(), frozenset(ALWAYS), writes=True),
    # A graph that changes between pages of an export is ABORTED (GRAPH_CHANGED).
    Rpc("ExportGraph", hs.export_requests(), frozenset(ALWAYS | {C.ABORTED}), stream=True),
    Rpc(
        "ImportGraph",
        hs.import_streams(),
        frozenset(ALWAYS | {C.ALREADY_EXISTS}),
        writes=True,
        client_stream=True,
    ),
    Rpc("PutKnowledgeSchema", hs.put_knowledge_schema_requests(), frozenset(ALWAYS), True),
    Rpc("ListKnowledgeSchemas", hs.list_knowledge_schemas_requests(), frozenset(ALWAYS)),
    Rpc(
        "DeleteKnowledgeSchema",
        hs.delete_knowledge_schema_requests(),
        frozenset(ALWAYS | {C.NOT_FOUND}),
        writes=True,
    ),
    # Offline there is no LLM: a registered schema's document is FAILED_PRECONDITION.
    Rpc(
        "GetKnowledge",
        hs.get_knowledge_requests(),
        frozenset(ALWAYS | {C.NOT_FOUND, C.FAILED_PRECONDITION}),
    ),
]


@dataclass
class Target:
    server: ThreadedApp
    channel: grpc.Channel
    fingerprint: Fingerprint

    def call(self, rpc: Rpc, request: Any) -> tuple[grpc.StatusCode, Any]:
        """(status code, the RpcError or None). A server stream is read to its first event
        (StreamContext never ends by itself) or to its end (ExportGraph); a client stream is a
        list of messages (or raw bytes sent as its one message)."""
        raw = isinstance(request, bytes)
        method = SERVICE + rpc.name
        if rpc.client_stream:
            messages = [request] if raw else list(request)
            serialize = None if raw else _serializer(messages)
        else:
            serialize = None if raw else type(request).SerializeToString
        try:
            if rpc.client_stream:
                upload = self.channel.stream_unary(method, request_serializer=serialize)
                upload(iter(messages), metadata=AUTH, timeout=CALL_TIMEOUT_S)
            elif rpc.stream and rpc.name == "ExportGraph":
                export = self.channel.unary_stream(method, request_serializer=serialize)
                for _ in export(request, metadata=AUTH, timeout=CALL_TIMEOUT_S):
                    pass
            elif rpc.stream:
                stream = self.channel.unary_stream(method, request_serializer=serialize)
                call = stream(request, metadata=AUTH, timeout=CALL_TIMEOUT_S)
                try:
                    next(iter(call))
                finally:
                    call.cancel()
            else:
                unary = self.channel.unary_unary(method, request_serializer=serialize)
                unary(request, metadata=AUTH, timeout=CALL_TIMEOUT_S)
        except grpc.RpcError as err:
            return err.code(), err
        return C.OK, None


def _serializer(messages: list[Message]) -> Any:
    from persona.v1 import graph_pb2

    return (type(messages[0]) if messages else graph_pb2.ImportGraphRequest).SerializeToString


def _seed(target: str) -> None:
    """A little real data, so that valid-looking requests reach rows and not only empties."""
    with grpc.insecure_channel(target) as channel:
        ingest = channel.unary_unary(
            SERVICE + "Ingest",
            request_serializer=svc.IngestRequest.SerializeToString,
            response_deserializer=svc.IngestResponse.FromString,
        )
        for user in hs.USERS:
            items = [
                svc.IngestItem(text=text, source_id=f"seed-{i}")
                for i, text in enumerate(
                    [
                        "I moved to Lisbon in March and my sister Ana visits in May.",
                        "I prefer window seats and I want to run a marathon next year.",
                        "Dr. Lee said my knee is fine; I started learning Portuguese.",
                    ]
                )
            ]
            ingest(svc.IngestRequest(user_id=user, items=items), metadata=AUTH, timeout=60)


def _sqlite_fingerprint(db: Path) -> Fingerprint:
    def read() -> tuple[int, ...]:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            tables = [
                r[0]
                for r in conn.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '%fts%' ORDER BY name"
                )
            ]
            counts = [conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables]
            # A write that changes rows without adding any (a replace) still logs a change.
            (last,) = conn.execute("SELECT coalesce(sum(seq), 0) FROM changes").fetchone()
            return (*counts, last)
        finally:
            conn.close()

    return read


def _neo4j_fingerprint(target: Neo4jTarget) -> Fingerprint:
    from neo4j import GraphDatabase

    driver = GraphDatabase.driver(target.uri, auth=target.auth)

    def read() -> tuple[int, ...]:
        records, _, _ = driver.execute_query(
            "MATCH (n) WITH count(n) AS nodes "
            "OPTIONAL MATCH ()-[r]->() WITH nodes, count(r) AS relationships "
            "OPTIONAL MATCH (c:PersonaChange) "
            "RETURN nodes, relationships, count(c) AS changes, coalesce(max(c.seq), 0) AS last",
            database_=target.database,
        )
        row = records[0]
        return (row["nodes"], row["relationships"], row["changes"], row["last"])

    return read


@pytest.fixture(scope="module", params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def target(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: LocalOnnxEmbedder,
) -> Iterator[Target]:
    data = tmp_path_factory.mktemp("hostile") / "data"
    overrides: dict[str, Any] = {}
    if request.param == "neo4j":
        neo4j = Neo4jTarget(
            uri=request.getfixturevalue("neo4j_uri"), auth=request.getfixturevalue("neo4j_auth")
        )
        wipe_database(neo4j)
        overrides = server_settings(neo4j)
        fingerprint = _neo4j_fingerprint(neo4j)
    else:
        fingerprint = _sqlite_fingerprint(data / "persona.db")
    with ThreadedApp(make_settings(data, **overrides), embedder) as server:
        _seed(server.target)
        with grpc.insecure_channel(server.target) as channel:
            yield Target(server, channel, fingerprint)


def field_violations(err: grpc.RpcError) -> list[str]:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    assert status is not None, "INVALID_ARGUMENT without rich status details"
    fields: list[str] = []
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields += [v.field for v in bad.field_violations]
    return fields


def check_outcome(target: Target, rpc: Rpc, request: Message | bytes) -> grpc.StatusCode:
    before = target.fingerprint()
    code, err = target.call(rpc, request)
    shown = repr(request)[:300]
    assert code in rpc.allowed, f"{rpc.name} answered {code}: {err and err.details()} to {shown}"
    if code is C.INVALID_ARGUMENT:
        fields = field_violations(err)
        assert fields, f"{rpc.name}: INVALID_ARGUMENT names no field ({err.details()})"
        assert all(f.strip() for f in fields), f"{rpc.name}: an empty field name in {fields}"
    if code is not C.OK or not rpc.writes:
        assert target.fingerprint() == before, f"{rpc.name} wrote something for {shown}"
    return code


@pytest.mark.parametrize("rpc", RPCS, ids=[r.name for r in RPCS])
@given(data=st.data())
def test_generated_requests_get_documented_answers_and_write_nothing_when_rejected(
    target: Target, rpc: Rpc, data: st.DataObject
) -> None:
    check_outcome(target, rpc, data.draw(rpc.requests))


@pytest.mark.parametrize("rpc", RPCS, ids=[r.name for r in RPCS])
@given(data=st.data())
def test_bytes_that_are_not_the_request_are_invalid_argument(
    target: Target, rpc: Rpc, data: st.DataObject
) -> None:
    valid = svc.GetMemoryRequest(user_id="u1", memory_id="ep_x").SerializeToString()
    code = check_outcome(target, rpc, data.draw(hs.raw_requests(valid)))
    # Random bytes may happen to parse as some request (fields of other types are skipped):
    # then any documented answer is fine; a bad string or broken wire must be refused.
    assert code in rpc.allowed


def test_a_bad_string_inside_a_nested_message_is_named(target: Target) -> None:
    ok = svc.IngestItem(text="fine").SerializeToString()
    bad = b"\x0a\x03\xed\xa0\x80"  # IngestItem.text = a UTF-8-encoded lone surrogate
    body = b"\x0a\x02u1" + b"\x12" + bytes([len(ok)]) + ok + b"\x12" + bytes([len(bad)]) + bad
    ingest = next(r for r in RPCS if r.name == "Ingest")
    before = target.fingerprint()
    code, err = target.call(ingest, body)
    assert code is C.INVALID_ARGUMENT
    assert field_violations(err) == ["items[1].text"]
    assert target.fingerprint() == before
    # And the stored data is still served as it was.
    assert target.call(next(r for r in RPCS if r.name == "Recall"), _recall("u1"))[0] is C.OK


@pytest.mark.parametrize("schema", hs.NASTY_SCHEMAS, ids=lambda s: s[:20])
def test_nasty_schemas_are_refused_naming_the_field(target: Target, schema: str) -> None:
    ask = next(r for r in RPCS if r.name == "AskStructured")
    request = svc.AskStructuredRequest(user_id="u1", question="where?", json_schema=schema)
    code, err = target.call(ask, request)
    assert code is C.INVALID_ARGUMENT, (code, err and err.details())
    assert field_violations(err) == ["json_schema"]


@pytest.mark.parametrize("schema", hs.NASTY_SCHEMAS, ids=lambda s: s[:20])
def test_nasty_knowledge_schemas_are_refused_naming_the_field(target: Target, schema: str) -> None:
    put = next(r for r in RPCS if r.name == "PutKnowledgeSchema")
    before = target.fingerprint()
    code, err = target.call(put, kpb.PutKnowledgeSchemaRequest(name="nasty", json_schema=schema))
    assert code is C.INVALID_ARGUMENT, (code, err and err.details())
    assert field_violations(err) == ["json_schema"]
    assert target.fingerprint() == before


def _recall(user: str) -> svc.RecallRequest:
    return svc.RecallRequest(user_id=user, query="Lisbon", max_results=3)
