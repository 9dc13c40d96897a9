"""A slow consumer of the context feed: its buffer stays bounded, changes are coalesced per
memory, and past the bound it gets a resync. Driven at the service level on a real server and
store, where "slow" is exact: the consumer reads nothing until the test says so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from persona import AsyncPersonaClient, Item
from persona_server.adapters.embedders.local_onnx import LocalOnnxEmbedder
from persona_server.app import App, start
from persona_server.domain.models import ChangeKind, MemoryType, UserRef
from persona_server.services.commands import StreamQuery
from persona_server.services.results import ResyncEvent, SnapshotEvent, StreamEvent, UpdateEvent
from tests.transport.transport_settings import KEY_A, make_settings

USER = UserRef(tenant="tenant-a", user_id="u1")
BUFFER = 4


@pytest.fixture
async def small_buffer_app(tmp_path: Path, embedder: LocalOnnxEmbedder) -> AsyncIterator[App]:
    app = await start(make_settings(tmp_path / "data", stream_buffer=BUFFER), embedder=embedder)
    try:
        yield app
    finally:
        await app.stop(grace_s=0)


def recent_episodes(max_results: int = 3) -> StreamQuery:
    return StreamQuery(
        user=USER,
        query="",
        max_results=max_results,
        types=frozenset({MemoryType.EPISODE}),
        heartbeat_s=60.0,
    )


async def caught_up(app: App) -> None:
    """Until this process's reader of the user's log has read all of it."""
    latest = await app.store.changes.latest_seq(USER)
    for _ in range(400):
        if app.services.feed.hub.position(USER) == latest:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the feed did not catch up")


async def ingest(app: App, texts: list[str], prefix: str) -> list[str]:
    async with AsyncPersonaClient(f"127.0.0.1:{app.port}", api_key=KEY_A) as client:
        ids = []
        for i, text in enumerate(texts):
            done = await client.ingest("u1", [Item(text, source_id=f"{prefix}{i}")])
            ids.append(done.results[0].episode_id)
        return ids


async def test_a_slow_consumer_stays_within_its_buffer_and_gets_a_resync(
    small_buffer_app: App,
) -> None:
    app = small_buffer_app
    await ingest(app, ["first note", "second note", "third note"], "a")
    events: AsyncIterator[StreamEvent] = app.services.feed.stream(recent_episodes())
    try:
        assert isinstance(await anext(events), SnapshotEvent)
        (sub,) = app.services.feed.hub.subscribers(USER)
        fills = []
        for i in range(8):
            await ingest(app, [f"newer note {i}"], f"b{i}")
            await caught_up(app)
            fills.append(sub.pending)
        # Every new episode enters (rank 1) and pushes the oldest out: two memories per note,
        # until the bound is passed and the pending changes make way for a resync.
        assert max(fills) <= BUFFER
        assert fills[:2] == [2, 4] and fills[2:] == [0] * 6

        event = await anext(events)
        assert isinstance(event, ResyncEvent)
        fresh = app.services.feed.stream(recent_episodes())
        try:
            snapshot = await anext(fresh)
            assert isinstance(snapshot, SnapshotEvent)
        finally:
            await fresh.aclose()
        assert [r.memory.id for r in event.outcome.results] == [
            r.memory.id for r in snapshot.outcome.results
        ]
        assert event.seq == snapshot.seq and sub.pending == 0
    finally:
        await events.aclose()
    assert app.services.feed.hub.subscribers(USER) == []


async def test_a_consumer_that_falls_behind_gets_one_coalesced_update(app: App) -> None:
    await ingest(app, ["first note", "second note", "third note"], "a")
    events: AsyncIterator[StreamEvent] = app.services.feed.stream(recent_episodes())
    try:
        snapshot = await anext(events)
        assert isinstance(snapshot, SnapshotEvent)
        held = [r.memory.id for r in snapshot.outcome.results]
        # Each note is written, then extracted: two commits, so two updates when read live.
        new = await ingest(app, ["newer note 1", "newer note 2"], "b")
        await caught_up(app)

        event = await anext(events)
        assert isinstance(event, UpdateEvent)
        kinds = {c.memory_id: (c.kind, c.rank) for c in event.changes}
        # Newest first: the two new notes, then the newest of the three held before.
        assert kinds == {
            new[1]: (ChangeKind.ADDED, 1),
            new[0]: (ChangeKind.ADDED, 2),
            held[1]: (ChangeKind.LEFT, 0),
            held[2]: (ChangeKind.LEFT, 0),
        }
        assert [m.memory_id for m in event.members] == [new[1], new[0], held[0]]
        (sub,) = app.services.feed.hub.subscribers(USER)
        assert sub.pending == 0 and sub.take() is None
    finally:
        await events.aclose()
