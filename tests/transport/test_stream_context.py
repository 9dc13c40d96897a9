"""StreamContext end to end on real in-process servers: the profile snapshot, relevance of
updates to a query, invalidation and deletion, exact resume, change-log retention, and
replicas sharing one store.

No assertion here is about time: "nothing was sent" is proven by a heartbeat whose resume
token already covers the change (the feed had processed it and found nothing to send).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from persona import (
    NO_RETRY,
    AsyncPersonaClient,
    InvalidArgumentError,
    Item,
    OutOfRangeError,
    UnavailableError,
)
from persona.v1 import memory_pb2
from persona.v1 import memory_service_pb2 as pb
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.adapters.stores.ranking import best_first_key
from persona_server.app import App, start
from persona_server.domain.models import Entity, Episode, Goal, GoalStatus, MemoryType, UserRef
from persona_server.ports.graph_store import MemoryOrder
from persona_server.services import resume_token
from tests.neo4j_plugin import Neo4jTarget, server_settings, stored_embedding, wipe_database
from tests.transport.transport_settings import KEY_A, make_settings

TENANT = "tenant-a"  # KEY_A's tenant
EPISODE = memory_pb2.MEMORY_TYPE_EPISODE
FACT = memory_pb2.MEMORY_TYPE_FACT
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
StartApp = Callable[..., Awaitable[App]]


@pytest.fixture
async def start_app(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[StartApp]:
    """Servers with settings of the test's choosing; every one on the same data directory
    unless told otherwise (so that two of them are replicas of one store)."""
    apps: list[App] = []

    async def launch(**overrides: Any) -> App:
        overrides.setdefault("data_dir", tmp_path / "data")
        settings = make_settings(**overrides)
        app = await start(settings, embedder=embedder)
        apps.append(app)
        return app

    try:
        yield launch
    finally:
        for app in apps:
            await app.stop(grace_s=0)


def ref(user_id: str) -> UserRef:
    return UserRef(tenant=TENANT, user_id=user_id)


def seq_of(event: pb.StreamContextResponse, user_id: str) -> int:
    return resume_token.decode(ref(user_id), event.resume_token).seq


async def next_event(stream: Any) -> pb.StreamContextResponse:
    event: pb.StreamContextResponse = await asyncio.wait_for(anext(stream), 20)
    return event


def kind(event: pb.StreamContextResponse) -> str:
    return event.WhichOneof("event") or ""


async def quiet_until(stream: Any, app: App, user_id: str) -> list[pb.StreamContextResponse]:
    """The updates sent until a heartbeat shows the stream caught up with the user's change
    log as it stands now (the heartbeat's token covers its last entry)."""
    latest = await app.store.changes.latest_seq(ref(user_id))
    updates = []
    while True:
        event = await next_event(stream)
        if kind(event) == "heartbeat" and seq_of(event, user_id) >= latest:
            return updates
        if kind(event) == "update":
            updates.append(event)


class Held:
    """What a client following a stream holds: the context's memories by id, with ranks."""

    def __init__(self, snapshot: pb.StreamContextResponse) -> None:
        self.memories: dict[str, pb.RecallResult] = {}
        self.ranks: dict[str, int] = {}
        self.reset(snapshot)

    def reset(self, snapshot: pb.StreamContextResponse) -> None:
        whole = snapshot.snapshot if kind(snapshot) == "snapshot" else snapshot.resync
        self.memories = {r.memory.id: r for r in whole.results}

    def apply(self, event: pb.StreamContextResponse) -> None:
        if kind(event) in ("snapshot", "resync"):
            self.reset(event)
            return
        if kind(event) != "update":
            return
        for change in event.update.changes:
            if change.rank:
                self.memories[change.result.memory.id] = change.result
            else:
                self.memories.pop(change.result.memory.id, None)
        self.ranks = {m.memory_id: m.rank for m in event.update.members}
        # The update is complete: what the client holds is exactly the listed context.
        assert set(self.memories) == set(self.ranks)


# --- profile -----------------------------------------------------------------------------

PEOPLE = ["Alice", "Bruno", "Chiara", "Dmitri", "Esther", "Farid", "Greta", "Hiro"]
HOBBIES = ["hiking", "chess", "jazz", "painting", "surfing", "baking"]
PLANS = ["learn Spanish", "run a marathon", "visit Japan", "write a novel", "buy a house"]


def profile_items(n: int) -> list[Item]:
    """Chat-like items with skewed mention counts, back-filled in random event order (the
    newest events are not the newest records)."""
    rng = random.Random(11)
    days = list(range(n))
    rng.shuffle(days)
    items = []
    for i, day in enumerate(days):
        person = PEOPLE[min(int(rng.expovariate(0.6)), len(PEOPLE) - 1)]
        hobby = HOBBIES[min(int(rng.expovariate(0.8)), len(HOBBIES) - 1)]
        text = [f"I had coffee with {person} today.", f"I love {hobby}."][i % 2]
        if i % 37 == 0:
            text = f"I want to {PLANS[(i // 37) % len(PLANS)]}."
        items.append(Item(text, source_id=f"p{i}", occurred_at=T0 + timedelta(days=day)))
    return items


ITEMS = 510  # over 500 episodes alone, and what extraction derives from them


async def test_profile_snapshot_of_a_user_with_more_than_500_memories(
    app: App, client: AsyncPersonaClient
) -> None:
    items = profile_items(ITEMS)
    for start_at in range(0, len(items), 255):
        await client.ingest("u1", items[start_at : start_at + 255])
    memories = await all_memories(app, "u1")
    assert len(memories) > 500

    stream = client.stream_context("u1", max_results=6, heartbeat_seconds=60)
    try:
        snapshot = await next_event(stream)
    finally:
        await stream.aclose()
    assert kind(snapshot) == "snapshot"
    got = [(r.memory.type, r.memory.id) for r in snapshot.snapshot.results]

    def best(memories_: list[Any], order: MemoryOrder) -> list[Any]:
        return sorted(memories_, key=lambda m: best_first_key(order, m), reverse=True)[:6]

    valid = [m for m in memories if m.invalid_at is None]
    goals = best(
        [m for m in valid if isinstance(m, Goal) and m.status is GoalStatus.ACTIVE],
        MemoryOrder.LATEST_RECORDED,
    )
    psyche = best([m for m in valid if m.type is MemoryType.PSYCHE], MemoryOrder.MOST_MENTIONED)
    entities = best(
        [m for m in valid if isinstance(m, Entity) and m.name != "user"],
        MemoryOrder.MOST_MENTIONED,
    )
    episodes = best([m for m in valid if isinstance(m, Episode)], MemoryOrder.LATEST_EVENT)
    expected = [(_PB_TYPE[m.type], m.id) for m in [*goals, *psyche, *entities, *episodes]]
    assert got == expected
    assert len(goals) == 5 and len(psyche) == 6 and len(entities) == 6 and len(episodes) == 6
    # The most recent episodes in event time: the last days, whatever order they came in.
    newest = [r.memory for r in snapshot.snapshot.results if r.memory.type == EPISODE]
    assert [m.occurred_at.ToDatetime(tzinfo=UTC) for m in newest] == [
        T0 + timedelta(days=ITEMS - 1 - i) for i in range(6)
    ]
    # Strongest first: mention counts never rise down a group.
    counts = [
        r.memory.reinforcement.mention_count
        for r in snapshot.snapshot.results
        if r.memory.type == memory_pb2.MEMORY_TYPE_PSYCHE
    ]
    assert counts == sorted(counts, reverse=True) and counts[0] > 1
    # Ranks restart in each group, and the score is 1/rank.
    assert [round(1 / r.score) for r in snapshot.snapshot.results[:5]] == [1, 2, 3, 4, 5]


_PB_TYPE = {
    MemoryType.EPISODE: memory_pb2.MEMORY_TYPE_EPISODE,
    MemoryType.PSYCHE: memory_pb2.MEMORY_TYPE_PSYCHE,
    MemoryType.GOAL: memory_pb2.MEMORY_TYPE_GOAL,
    MemoryType.ENTITY: memory_pb2.MEMORY_TYPE_ENTITY,
    MemoryType.FACT: memory_pb2.MEMORY_TYPE_FACT,
}


async def all_memories(app: App, user_id: str) -> list[Any]:
    """Every memory of the user as the server's domain model (pages of the store's list)."""
    from persona_server.ports.graph_store import MemoryFilter

    out: list[Any] = []
    cursor = ""
    while True:
        page = await app.store.memories.list_page(
            ref(user_id), filter=MemoryFilter(include_invalidated=True), limit=500, cursor=cursor
        )
        out.extend(page.memories)
        if not page.next_cursor:
            return out
        cursor = page.next_cursor


async def test_profile_without_a_query_refuses_facts_only(client: AsyncPersonaClient) -> None:
    with pytest.raises(InvalidArgumentError) as err:
        await anext(client.stream_context("u1", types=[FACT]))
    assert [v.field for v in err.value.field_violations] == ["types"]


# --- relevance ---------------------------------------------------------------------------

CAT_QUERY = "Miso the cat"


def cat_user_items() -> list[Item]:
    """Three clear answers to CAT_QUERY amid unrelated notes, with unrelated notes on both
    sides in event time (so no temporal neighbour of an answer is a newcomer)."""
    notes = [
        "The train to Leeds was delayed again.",
        "Booked a dentist appointment for Thursday.",
        "The quarterly budget review is next week.",
        "Our router needed a firmware update.",
    ]
    cats = [
        "Miso the cat knocked a glass off the table.",
        "Took Miso the cat to the vet for her vaccines.",
        "Miso the cat sleeps on my keyboard.",
    ]
    texts = [*notes, *cats, *[n.replace(".", " today.") for n in notes]]
    return [
        Item(t, source_id=f"c{i}", occurred_at=T0 + timedelta(days=10 + i))
        for i, t in enumerate(texts)
    ]


async def test_query_updates_only_for_memories_that_rank(
    app: App, client: AsyncPersonaClient
) -> None:
    await client.ingest("u1", cat_user_items())
    stream = client.stream_context("u1", query=CAT_QUERY, max_results=3, heartbeat_seconds=1)
    try:
        snapshot = await next_event(stream)
        held = Held(snapshot)
        assert len(held.memories) == 3
        assert all("Miso" in r.memory.text for r in held.memories.values())

        # Unrelated, and far from the answers in event time: the feed reads it and sends nothing.
        await client.ingest(
            "u1",
            [Item("Paid the electricity bill.", source_id="n1", occurred_at=T0 + timedelta(400))],
        )
        assert await quiet_until(stream, app, "u1") == []

        # Related: it ranks, so it is sent with its rank and score, and pushes one out.
        related = await client.ingest(
            "u1",
            [
                Item(
                    "Miso the cat caught her first mouse, clever cat Miso.",
                    source_id="n2",
                    occurred_at=T0 + timedelta(days=30),
                )
            ],
        )
        new_id = related.results[0].episode_id
        updates = await quiet_until(stream, app, "u1")
    finally:
        await stream.aclose()
    before = set(held.memories)
    changes = [c for u in updates for c in u.update.changes]
    added = [c for c in changes if c.result.memory.id == new_id]
    # Added, then perhaps updated once extraction has run (its state is part of the memory).
    assert added[0].kind == pb.CHANGE_KIND_ADDED
    assert {c.kind for c in added[1:]} <= {pb.CHANGE_KIND_UPDATED}
    assert all(1 <= c.rank <= 3 and c.result.score > 0 for c in added)
    for update in updates:
        held.apply(update)
    assert new_id in held.memories and len(held.memories) == 3
    # What it pushed out was sent as leaving, with rank 0.
    left = {c.result.memory.id for c in changes if c.kind == pb.CHANGE_KIND_LEFT}
    assert left == before - set(held.memories) and left
    assert all(c.rank == 0 for c in changes if c.kind == pb.CHANGE_KIND_LEFT)
    last = {m.memory_id: m for m in updates[-1].update.members}
    assert held.ranks == {i: m.rank for i, m in last.items()}


# --- invalidation and deletion -----------------------------------------------------------


async def test_invalidated_and_deleted_memories_leave_the_context(
    app: App, client: AsyncPersonaClient
) -> None:
    first = await client.ingest("u1", [Item("I live in Berlin.", source_id="home1")])
    facts = client.stream_context(
        "u1", query="where does the user live", types=[FACT], heartbeat_seconds=1
    )
    profile = client.stream_context("u1", types=[EPISODE], heartbeat_seconds=1)
    try:
        snapshot = await next_event(facts)
        (berlin,) = [r.memory for r in snapshot.snapshot.results if "Berlin" in r.memory.text]
        assert kind(await next_event(profile)) == "snapshot"

        await client.ingest("u1", [Item("I live in Lisbon now.", source_id="home2")])
        fact_updates = await quiet_until(facts, app, "u1")
        by_id = {c.result.memory.id: c for u in fact_updates for c in u.update.changes}
        invalidated = by_id[berlin.id]
        assert invalidated.kind == pb.CHANGE_KIND_INVALIDATED and invalidated.rank == 0
        assert invalidated.result.memory.validity.HasField("invalid_at")
        assert invalidated.result.memory.text == "The user lives in Berlin"
        lisbon = [c for c in by_id.values() if "Lisbon" in c.result.memory.text]
        assert [c.kind for c in lisbon] == [pb.CHANGE_KIND_ADDED] and lisbon[0].rank >= 1
        assert berlin.id not in {m.memory_id for m in fact_updates[-1].update.members}

        episode_id = first.results[0].episode_id
        await client.delete_memory("u1", episode_id)
        updates = await quiet_until(profile, app, "u1")
    finally:
        await facts.aclose()
        await profile.aclose()
    deleted = [c for u in updates for c in u.update.changes if c.result.memory.id == episode_id]
    assert [(c.kind, c.rank) for c in deleted] == [(pb.CHANGE_KIND_DELETED, 0)]
    assert deleted[0].result.memory.type == EPISODE and not deleted[0].result.memory.text
    assert episode_id not in {m.memory_id for m in updates[-1].update.members}


# --- resume ------------------------------------------------------------------------------


@pytest.mark.parametrize("query", ["", CAT_QUERY], ids=["profile", "query"])
async def test_resume_replays_exactly_what_was_missed(
    app: App, client: AsyncPersonaClient, query: str
) -> None:
    await client.ingest("u1", cat_user_items())
    # The control stream stays connected throughout; the other one leaves and comes back.
    control = client.stream_context("u1", query=query, max_results=3, heartbeat_seconds=1)
    leaving = client.stream_context("u1", query=query, max_results=3, heartbeat_seconds=1)
    try:
        control_held = Held(await next_event(control))
        away = await next_event(leaving)
        assert kind(away) == "snapshot"
        held = Held(away)
        await leaving.aclose()

        await client.ingest(
            "u1",
            [
                Item("Miso the cat chased a moth all night.", source_id="m1"),
                Item("Miso the cat learned to open the fridge.", source_id="m2"),
            ],
        )
        await client.delete_memory("u1", sorted(held.memories)[0])
        await client.ingest("u1", [Item("Miso the cat ignores the new toy.", source_id="m3")])
        missed = await quiet_until(control, app, "u1")
        for event in missed:
            control_held.apply(event)

        resumed = client.stream_context(
            "u1",
            query=query,
            max_results=3,
            heartbeat_seconds=1,
            resume_token=away.resume_token,
        )
        try:
            replay = await quiet_until(resumed, app, "u1")
        finally:
            await resumed.aclose()
    finally:
        await control.aclose()
    assert missed, "the changes concern this context"
    assert len(replay) == 1  # everything missed, coalesced into one update
    (update,) = replay
    changed = [c.result.memory.id for c in update.update.changes]
    assert len(changed) == len(set(changed))
    # A resumed stream sends nothing the live one did not...
    assert set(changed) <= {c.result.memory.id for e in missed for c in e.update.changes}
    # ...and nothing twice: no change for a memory the client held, still holds, unchanged.
    before = dict(held.memories)
    after = control_held.memories
    for memory_id in changed:
        assert not (
            memory_id in before
            and memory_id in after
            and before[memory_id].memory == after[memory_id].memory
        ), memory_id
    # Nothing missed: the client ends up exactly where the one that never left is.
    held.apply(update)
    assert {k: v.memory for k, v in held.memories.items()} == {
        k: v.memory for k, v in after.items()
    }
    assert held.ranks == control_held.ranks


async def test_bad_tokens(client: AsyncPersonaClient) -> None:
    await client.ingest("u1", [Item("something", source_id="s1")])
    with pytest.raises(InvalidArgumentError) as err:
        await anext(client.stream_context("u1", resume_token="not-a-token"))
    assert [v.field for v in err.value.field_violations] == ["resume_token"]
    stream = client.stream_context("u1", heartbeat_seconds=1)
    token = (await next_event(stream)).resume_token
    await stream.aclose()
    with pytest.raises(InvalidArgumentError) as err:
        await anext(client.stream_context("u2", resume_token=token))
    assert "another user" in err.value.field_violations[0].description


async def test_a_pruned_token_is_out_of_range(start_app: StartApp) -> None:
    app = await start_app(change_log_max_entries=5)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        await client.ingest("u1", [Item("first", source_id="a")])
        stream = client.stream_context("u1", heartbeat_seconds=1)
        token = (await next_event(stream)).resume_token
        await stream.aclose()
        for i in range(4):
            await client.ingest("u1", [Item(f"note number {i}", source_id=f"n{i}")])
        assert (
            await app.store.changes.latest_seq(ref("u1"))
            > 5 + resume_token.decode(ref("u1"), token).seq
        )
        with pytest.raises(OutOfRangeError) as err:
            await anext(client.stream_context("u1", resume_token=token))
    assert err.value.reason == "RESUME_TOKEN_OUT_OF_RANGE"
    assert err.value.metadata["field"] == "resume_token"
    assert "without a resume token" in err.value.message


async def test_a_token_older_than_the_max_age_is_out_of_range(start_app: StartApp) -> None:
    app = await start_app(change_log_max_age_s=0.2)
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        stream = client.stream_context("u1", heartbeat_seconds=1)
        token = (await next_event(stream)).resume_token
        await stream.aclose()
        await client.ingest("u1", [Item("soon forgotten", source_id="a")])
        # The server's pruner runs every max_age / 4: wait until the entry is gone.
        for _ in range(200):
            if not await app.store.changes.since(ref("u1"), 0, 10):
                break
            await asyncio.sleep(0.05)
        assert await app.store.changes.since(ref("u1"), 0, 10) == []
        with pytest.raises(OutOfRangeError):
            await anext(client.stream_context("u1", resume_token=token))
        # A token taken after the pruning resumes fine.
        fresh = client.stream_context("u1", heartbeat_seconds=1)
        token = (await next_event(fresh)).resume_token
        await fresh.aclose()
        again = client.stream_context("u1", heartbeat_seconds=1, resume_token=token)
        assert kind(await next_event(again)) == "heartbeat"
        await again.aclose()


# --- replicas ----------------------------------------------------------------------------


def _neo4j_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The test Neo4j, wiped only when it holds data of another embedding model (the store
    suite's); the streams below use a user id of their own."""
    embedder: LocalOnnxEmbedder = request.getfixturevalue("embedder")
    target = Neo4jTarget(
        uri=request.getfixturevalue("neo4j_uri"), auth=request.getfixturevalue("neo4j_auth")
    )
    if stored_embedding(target) not in (None, (embedder.model_id, embedder.dimension)):
        wipe_database(target)
    return server_settings(target)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("neo4j", marks=pytest.mark.neo4j)])
async def test_two_servers_on_one_store_deliver_each_others_ingests(
    start_app: StartApp, backend: str, request: pytest.FixtureRequest
) -> None:
    settings = {} if backend == "sqlite" else _neo4j_settings(request)
    first = await start_app(**settings)
    second = await start_app(**settings)
    user_id = f"replicas-{uuid.uuid4().hex[:8]}"  # the Neo4j database may be shared
    async with (
        AsyncPersonaClient(f"127.0.0.1:{first.port}", api_key=KEY_A, default_timeout_s=60) as a,
        AsyncPersonaClient(f"127.0.0.1:{second.port}", api_key=KEY_A, default_timeout_s=60) as b,
    ):
        on_a = a.stream_context(user_id, heartbeat_seconds=1)
        on_b = b.stream_context(user_id, heartbeat_seconds=1)
        try:
            assert kind(await next_event(on_a)) == "snapshot"
            assert kind(await next_event(on_b)) == "snapshot"
            via_a = (await a.ingest(user_id, [Item("written through A", source_id="a1")])).results
            via_b = (await b.ingest(user_id, [Item("written through B", source_id="b1")])).results
            for stream, server in ((on_a, first), (on_b, second)):
                updates = await quiet_until(stream, server, user_id)
                added = {
                    c.result.memory.id
                    for u in updates
                    for c in u.update.changes
                    if c.kind == pb.CHANGE_KIND_ADDED
                }
                assert {via_a[0].episode_id, via_b[0].episode_id} <= added
        finally:
            await on_a.aclose()
            await on_b.aclose()


async def test_a_failing_store_ends_streams_with_unavailable(app: App) -> None:
    async with AsyncPersonaClient(
        f"127.0.0.1:{app.port}", api_key=KEY_A, stream_retry=NO_RETRY
    ) as client:
        stream = client.stream_context("u1", heartbeat_seconds=60)
        assert kind(await next_event(stream)) == "snapshot"
        await app.store.close()  # the user's reader fails at its next poll
        with pytest.raises(UnavailableError) as err:
            await next_event(stream)
    assert err.value.reason == "STORE_UNAVAILABLE"
    assert app.services.feed.hub.feed_count() == 0
