"""Two tenants with the same user ids, random interleavings of every RPC, both stores: no read
ever returns the other tenant's data.

Every text a tenant ingests carries that tenant's marker word, and every source id its prefix,
so that anything of tenant A's is recognisable in any answer to tenant B: a memory's text, its
source ids, its provenance, a context block. Requests also try the other tenant's memory ids,
page tokens and resume tokens, which must never open the other tenant's data.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from persona.v1 import graph_pb2
from persona.v1 import knowledge_pb2 as kpb
from persona.v1 import memory_pb2 as mpb
from persona.v1 import memory_service_pb2 as svc
from persona.v1 import memory_service_pb2_grpc as svc_grpc
from persona.v1 import profile_pb2 as ppb
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from tests.neo4j_plugin import Neo4jTarget, server_settings, wipe_database
from tests.threaded_app import ThreadedApp
from tests.transport.transport_settings import KEY_A, KEY_B, make_settings

TENANTS = {"A": KEY_A, "B": KEY_B}
MARKERS = {"A": "zebracorn", "B": "quokkafish"}  # words no other text contains
USERS = ("u1", "u2", "shared")
TEXTS = (
    "I met {m} at the Lisbon office, and {m} told me about the new project",
    "My sister {m} moved to Porto in March",
    "I want to learn the {m} recipe before my birthday",
    "I prefer tea to coffee, {m} says the same",
)
SCHEMA_NAMES = ("profile", "work")  # both tenants register the same names
TIMEOUT_S = 30.0
OK_CODES = {grpc.StatusCode.OK, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}
_servers: dict[str, ThreadedApp] = {}


@dataclass
class Seen:
    """What each tenant has been given back, to try against the other tenant."""

    memory_ids: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in TENANTS})
    page_tokens: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in TENANTS})
    resume_tokens: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in TENANTS})


def _pick(data: st.DataObject, choices: list[str], default: str) -> str:
    """One of `choices` (which come from the server, so differ between runs): hypothesis draws
    an index, so that what it generates never depends on the server's answers."""
    index = data.draw(st.integers(0, 1 << 16))
    return choices[index % len(choices)] if choices else default


def _other(tenant: str) -> str:
    return "B" if tenant == "A" else "A"


def _leaks(tenant: str, message: Any) -> list[str]:
    """Traces of the other tenant's data anywhere in a response."""
    other = _other(tenant)
    text = str(message)
    problems = []
    if MARKERS[other] in text:
        problems.append(f"the other tenant's marker word {MARKERS[other]!r}")
    if f"src-{other}-" in text:
        problems.append("the other tenant's source ids")
    return problems


class TwoTenants(RuleBasedStateMachine):
    store = "sqlite"

    def __init__(self) -> None:
        super().__init__()
        server = _servers[self.store]
        self.channel = grpc.insecure_channel(server.target)
        self.stub = svc_grpc.MemoryServiceStub(self.channel)
        self.seen = Seen()
        self.counter = 0
        self.schemas: dict[str, set[str]] = {t: set() for t in TENANTS}

    def teardown(self) -> None:
        self.channel.close()

    def _call(self, tenant: str, method: str, request: Any) -> Any:
        try:
            response = getattr(self.stub, method)(
                request, metadata=(("x-api-key", TENANTS[tenant]),), timeout=TIMEOUT_S
            )
        except grpc.RpcError as err:
            assert err.code() in OK_CODES, f"{method} for {tenant}: {err.code()} {err.details()}"
            assert not _leaks(tenant, err.details()), f"{method} error leaks: {err.details()}"
            return None
        assert not _leaks(tenant, response), (
            f"{method} for {tenant} leaks {_leaks(tenant, response)}"
        )
        return response

    def _remember(self, tenant: str, memories: Any) -> None:
        for memory in memories:
            self.seen.memory_ids[tenant].add(memory.id)

    def _any_id(self, data: st.DataObject) -> str:
        ids = sorted(self.seen.memory_ids["A"] | self.seen.memory_ids["B"])
        return _pick(data, ids, "ep_missing")

    @initialize()
    def clean(self) -> None:
        # Every run starts from two empty tenants.
        for tenant in TENANTS:
            for user in USERS:
                self._call(tenant, "DeleteUser", svc.DeleteUserRequest(user_id=user))
            for name in SCHEMA_NAMES:
                self._call(
                    tenant, "DeleteKnowledgeSchema", kpb.DeleteKnowledgeSchemaRequest(name=name)
                )

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS), data=st.data())
    def ingest(self, tenant: str, user: str, data: st.DataObject) -> None:
        n = data.draw(st.integers(1, 3))
        items = []
        for _ in range(n):
            self.counter += 1
            template = data.draw(st.sampled_from(TEXTS))
            items.append(
                svc.IngestItem(
                    text=template.format(m=MARKERS[tenant]),
                    source_id=f"src-{tenant}-{self.counter}",
                    metadata={"tenant": tenant},
                )
            )
        response = self._call(tenant, "Ingest", svc.IngestRequest(user_id=user, items=items))
        assert response is not None
        self.seen.memory_ids[tenant] |= {r.episode_id for r in response.results}

    @rule(
        tenant=st.sampled_from(sorted(TENANTS)),
        user=st.sampled_from(USERS),
        query=st.sampled_from([*MARKERS.values(), "Lisbon office", "sister", "recipe", "tea"]),
        history=st.booleans(),
    )
    def recall(self, tenant: str, user: str, query: str, history: bool) -> None:
        request = svc.RecallRequest(
            user_id=user, query=query, max_results=20, include_history=history, explain=True
        )
        response = self._call(tenant, "Recall", request)
        if response is not None:
            self._remember(tenant, [r.memory for r in response.results])

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS), data=st.data())
    def get(self, tenant: str, user: str, data: st.DataObject) -> None:
        memory_id = self._any_id(data)
        response = self._call(
            tenant, "GetMemory", svc.GetMemoryRequest(user_id=user, memory_id=memory_id)
        )
        if response is not None:
            assert memory_id not in self.seen.memory_ids[_other(tenant)] or (
                memory_id in self.seen.memory_ids[tenant]
            ), "a memory id of the other tenant was served"

    @rule(
        tenant=st.sampled_from(sorted(TENANTS)),
        user=st.sampled_from(USERS),
        dormant=st.booleans(),
    )
    def profile(self, tenant: str, user: str, dormant: bool) -> None:
        request = ppb.GetProfileRequest(user_id=user, max_items=20, include_dormant=dormant)
        response = self._call(tenant, "GetProfile", request)
        if response is not None:
            groups = (response.psyche, response.goals, response.entities, response.episodes)
            self._remember(tenant, [i.memory for group in groups for i in group])

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS), data=st.data())
    def list_page(self, tenant: str, user: str, data: st.DataObject) -> None:
        tokens = sorted(self.seen.page_tokens["A"] | self.seen.page_tokens["B"])
        token = _pick(data, ["", *tokens], "")
        request = svc.ListMemoriesRequest(
            user_id=user, page_size=data.draw(st.integers(1, 5)), page_token=token
        )
        response = self._call(tenant, "ListMemories", request)
        if response is not None:
            self._remember(tenant, response.memories)
            if response.next_page_token:
                self.seen.page_tokens[tenant].add(response.next_page_token)

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS), data=st.data())
    def stream(self, tenant: str, user: str, data: st.DataObject) -> None:
        tokens = sorted(self.seen.resume_tokens["A"] | self.seen.resume_tokens["B"])
        token = _pick(data, ["", *tokens], "")
        query = data.draw(st.sampled_from(["", *MARKERS.values()]))
        request = svc.StreamContextRequest(
            user_id=user, query=query, resume_token=token, heartbeat_seconds=1
        )
        call = self.stub.StreamContext(
            request, metadata=(("x-api-key", TENANTS[tenant]),), timeout=TIMEOUT_S
        )
        try:
            event = next(iter(call))
        except grpc.RpcError as err:
            assert err.code() in OK_CODES | {grpc.StatusCode.OUT_OF_RANGE}, err.details()
            assert not _leaks(tenant, err.details())
            return
        finally:
            call.cancel()
        assert not _leaks(tenant, event), f"StreamContext leaks {_leaks(tenant, event)}"
        self.seen.resume_tokens[tenant].add(event.resume_token)

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS), data=st.data())
    def delete_memory(self, tenant: str, user: str, data: st.DataObject) -> None:
        memory_id = self._any_id(data)
        response = self._call(
            tenant, "DeleteMemory", svc.DeleteMemoryRequest(user_id=user, memory_id=memory_id)
        )
        if response is not None:
            others = self.seen.memory_ids[_other(tenant)] - self.seen.memory_ids[tenant]
            deleted = set(response.deleted_ids) & others
            assert not deleted, f"deleted the other tenant's memories {deleted}"

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS))
    def export(self, tenant: str, user: str) -> None:
        call = self.stub.ExportGraph(
            graph_pb2.ExportGraphRequest(user_id=user),
            metadata=(("x-api-key", TENANTS[tenant]),),
            timeout=TIMEOUT_S,
        )
        try:
            for chunk in call:
                leaks = _leaks(tenant, chunk)
                assert not leaks, f"ExportGraph for {tenant} leaks {leaks}"
                self._remember(tenant, chunk.nodes)
        except grpc.RpcError as err:
            # A write between pages ends an export with ABORTED; never with data of another.
            assert err.code() in OK_CODES | {grpc.StatusCode.ABORTED}, err.details()
            assert not _leaks(tenant, err.details())

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS), data=st.data())
    def import_graph(self, tenant: str, user: str, data: st.DataObject) -> None:
        # Ids may be the other tenant's: importing must never touch that tenant's memories.
        self.counter += 1
        fresh = f"ep_imp{tenant}{self.counter:08d}"
        memory_id = fresh if data.draw(st.booleans()) else self._any_id(data)
        node = mpb.Memory(
            id=memory_id,
            type=mpb.MEMORY_TYPE_EPISODE,
            text=f"imported note about the {MARKERS[tenant]} garden",
            metadata={"tenant": tenant},
            episode=mpb.Episode(
                source_id=f"src-{tenant}-imp{self.counter}",
                extraction=mpb.ExtractionStatus(state=mpb.EXTRACTION_STATE_DONE),
            ),
            reinforcement=mpb.Reinforcement(mention_count=1),
        )
        node.occurred_at.GetCurrentTime()
        node.recorded_at.GetCurrentTime()
        request = graph_pb2.ImportGraphRequest(user_id=user, nodes=[node])
        try:
            self.stub.ImportGraph(
                iter([request]), metadata=(("x-api-key", TENANTS[tenant]),), timeout=TIMEOUT_S
            )
            self.seen.memory_ids[tenant].add(memory_id)
        except grpc.RpcError as err:
            assert err.code() in OK_CODES | {grpc.StatusCode.ALREADY_EXISTS}, err.details()
            assert not _leaks(tenant, err.details()), err.details()

    @rule(tenant=st.sampled_from(sorted(TENANTS)), user=st.sampled_from(USERS))
    def ask(self, tenant: str, user: str) -> None:
        request = svc.AskStructuredRequest(
            user_id=user, question="who?", json_schema='{"type": "object"}'
        )
        try:
            self.stub.AskStructured(
                request, metadata=(("x-api-key", TENANTS[tenant]),), timeout=TIMEOUT_S
            )
        except grpc.RpcError as err:
            # Offline: FAILED_PRECONDITION, which must not leak either.
            assert err.code() is grpc.StatusCode.FAILED_PRECONDITION, err.details()
            assert not _leaks(tenant, err.details())

    @rule(tenant=st.sampled_from(sorted(TENANTS)), name=st.sampled_from(SCHEMA_NAMES))
    def put_knowledge_schema(self, tenant: str, name: str) -> None:
        # The tenant's marker in the schema makes it recognisable in the other tenant's answers.
        schema = json.dumps(
            {"type": "object", "description": MARKERS[tenant], "properties": {"city": {}}}
        )
        request = kpb.PutKnowledgeSchemaRequest(name=name, json_schema=schema)
        response = self._call(tenant, "PutKnowledgeSchema", request)
        assert response is not None
        assert response.created == (name not in self.schemas[tenant])
        self.schemas[tenant].add(name)

    @rule(tenant=st.sampled_from(sorted(TENANTS)), name=st.sampled_from(SCHEMA_NAMES))
    def delete_knowledge_schema(self, tenant: str, name: str) -> None:
        request = kpb.DeleteKnowledgeSchemaRequest(name=name)
        response = self._call(tenant, "DeleteKnowledgeSchema", request)
        assert (response is not None) == (name in self.schemas[tenant])
        self.schemas[tenant].discard(name)

    @rule(
        tenant=st.sampled_from(sorted(TENANTS)),
        user=st.sampled_from(USERS),
        name=st.sampled_from(SCHEMA_NAMES),
    )
    def get_knowledge(self, tenant: str, user: str, name: str) -> None:
        try:
            self.stub.GetKnowledge(
                kpb.GetKnowledgeRequest(user_id=user, name=name),
                metadata=(("x-api-key", TENANTS[tenant]),),
                timeout=TIMEOUT_S,
            )
            raise AssertionError("GetKnowledge answered offline")
        except grpc.RpcError as err:
            # Offline: FAILED_PRECONDITION for the tenant's own schema; another tenant's
            # schema of the same name does not exist for it.
            expected = (
                grpc.StatusCode.FAILED_PRECONDITION
                if name in self.schemas[tenant]
                else grpc.StatusCode.NOT_FOUND
            )
            assert err.code() is expected, (err.code(), err.details())
            assert not _leaks(tenant, err.details())

    @invariant()
    def each_tenant_lists_only_its_own_schemas(self) -> None:
        for tenant in TENANTS:
            page = self._call(tenant, "ListKnowledgeSchemas", kpb.ListKnowledgeSchemasRequest())
            assert page is not None
            assert {s.name for s in page.knowledge_schemas} == self.schemas[tenant]

    @invariant()
    def each_tenant_lists_only_its_own(self) -> None:
        for tenant in TENANTS:
            for user in USERS:
                token = ""
                while True:
                    page = self._call(
                        tenant,
                        "ListMemories",
                        svc.ListMemoriesRequest(user_id=user, page_size=100, page_token=token),
                    )
                    assert page is not None
                    for memory in page.memories:
                        if memory.type == 1:  # episodes carry their tenant in the metadata
                            assert memory.metadata["tenant"] == tenant
                    token = page.next_page_token
                    if not token:
                        break


@pytest.fixture(scope="module", params=["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
def store(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    embedder: LocalOnnxEmbedder,
) -> Iterator[str]:
    overrides: dict[str, Any] = {}
    if request.param == "neo4j":
        neo4j = Neo4jTarget(
            uri=request.getfixturevalue("neo4j_uri"), auth=request.getfixturevalue("neo4j_auth")
        )
        wipe_database(neo4j)
        overrides = server_settings(neo4j)
    data = tmp_path_factory.mktemp("tenancy") / "data"
    with ThreadedApp(make_settings(data, **overrides), embedder) as server:
        _servers[request.param] = server
        try:
            yield request.param
        finally:
            del _servers[request.param]


@pytest.mark.timeout(600)
def test_no_read_ever_returns_the_other_tenants_data(store: str) -> None:
    machine = type(f"TwoTenants_{store}", (TwoTenants,), {"store": store})
    current = settings()
    # Each step is a few calls; on Neo4j about a third of a second. Bounded in the test
    # command ("ci": 5 runs of 30 steps per store), as long as asked for with the long profile.
    run = settings(
        current,
        max_examples=max(current.max_examples // 5, 5),
        stateful_step_count=30,
    )
    from hypothesis.stateful import run_state_machine_as_test

    run_state_machine_as_test(machine, settings=run)
