"""Strength, dormancy and GetProfile through the SDK against the real server (embedded store).

The server's clock is the real one, so "old" here is years back: a derived memory mentioned
once in 2020 is far below the forget threshold once the user has spoken again since (psyche
half-life 120 days by default; decay runs on the user's own timeline, services.decay_time),
and an episode is never dormant."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import grpc
import pytest

from persona import AsyncPersonaClient, InvalidArgumentError, Item
from persona.v1 import memory_pb2 as pb

OLD = datetime(2020, 5, 1, 9, 0, tzinfo=UTC)
NOW = datetime.now(UTC)


def texts(memories: object) -> list[str]:
    return [m.text for m in memories]  # type: ignore[attr-defined]


async def psyche_recalled(client: AsyncPersonaClient, **kw: object) -> list[pb.Memory]:
    found = await client.recall("u1", "what does the user love", types=["psyche"], **kw)  # type: ignore[arg-type]
    return [r.memory for r in found.results]


async def test_dormant_memories_hidden_shown_on_request_and_revived(
    client: AsyncPersonaClient,
) -> None:
    await client.ingest("u1", [Item("I love hiking in the mountains.", "h1", occurred_at=OLD)])
    (stored,) = (await client.list_memories("u1", types=["psyche"])).memories
    assert stored.reinforcement.last_reinforced_at.ToDatetime(UTC) == OLD  # event time
    # A user away does not fade: their present is their latest event, still OLD.
    assert stored.strength == pytest.approx(0.5)
    assert [m.id for m in await psyche_recalled(client)] == [stored.id]
    assert [i.memory.id for i in (await client.get_profile("u1")).psyche] == [stored.id]

    # The user goes on living (today, about something else): the old preference is dormant.
    await client.ingest(
        "u1", [Item("We had a team meeting about the budget.", "m1", occurred_at=NOW)]
    )
    (stored,) = (await client.list_memories("u1", types=["psyche"])).memories
    assert 0 < stored.strength < 0.05

    assert await psyche_recalled(client) == []
    shown = await psyche_recalled(client, include_dormant=True)
    assert [m.id for m in shown] == [stored.id]
    assert shown[0].strength == pytest.approx(stored.strength, rel=1e-3)
    # Strength is computed at the request's as_of: later, weaker still.
    later = await psyche_recalled(client, include_dormant=True, as_of=NOW + timedelta(days=400))
    assert later[0].strength < stored.strength
    # The episode it came from is never dormant.
    episodes = await client.recall("u1", "hiking in the mountains", types=["episode"])
    assert episodes.results[0].memory.episode.source_id == "h1"
    profile = await client.get_profile("u1")
    assert list(profile.psyche) == []
    assert texts(i.memory for i in (await client.get_profile("u1", include_dormant=True)).psyche)

    # A new mention revives it: nothing was deleted, the same memory is reinforced.
    await client.ingest("u1", [Item("I love hiking, it clears my head.", "h2", occurred_at=NOW)])
    revived = await psyche_recalled(client)
    assert [m.id for m in revived] == [stored.id]
    assert revived[0].reinforcement.mention_count == 2
    assert revived[0].strength == pytest.approx(2 / 3, abs=0.01)
    assert [i.memory.id for i in (await client.get_profile("u1")).psyche] == [stored.id]


async def test_dormant_memories_leave_the_profile_stream(client: AsyncPersonaClient) -> None:
    await client.ingest(
        "u1",
        [
            Item("I love hiking in the mountains.", "h1", occurred_at=OLD),
            Item("I love chess.", "c1", occurred_at=NOW),
        ],
    )

    async def first(include_dormant: bool) -> list[str]:
        stream = client.stream_context(
            "u1", types=["psyche"], max_results=5, include_dormant=include_dormant
        )
        try:
            async for event in stream:
                return [r.memory.text for r in event.snapshot.results]
        finally:
            await stream.aclose()
        return []

    awake = await first(False)
    assert len(awake) == 1 and "chess" in awake[0]
    assert len(await first(True)) == 2


async def test_profile_content_and_order(client: AsyncPersonaClient) -> None:
    recent = NOW - timedelta(days=2)
    await client.ingest(
        "u1",
        [
            Item("I love chess.", "a", occurred_at=recent - timedelta(days=60)),
            Item("I love hiking in the mountains.", "b", occurred_at=recent - timedelta(days=1)),
            Item("I love to hike.", "c", occurred_at=recent),
            Item("I moved to Lisbon last year.", "d", occurred_at=recent),
            Item("I want to run a marathon.", "e", occurred_at=recent),
            Item("My sister Ana works at Google.", "f", occurred_at=recent),
        ],
    )
    profile = await client.get_profile("u1", max_items=5)
    psyche = [i.memory for i in profile.psyche]
    # Hiking: said twice, lately; chess: once, two months ago.
    assert [m.reinforcement.mention_count for m in psyche] == [2, 1]
    assert psyche[0].strength > psyche[1].strength
    assert "chess" in psyche[1].text
    strengths = [i.memory.strength for i in profile.entities]
    assert strengths == sorted(strengths, reverse=True)
    assert {i.memory.type for i in profile.entities} == {pb.MEMORY_TYPE_ENTITY}
    lisbon = next(i for i in profile.entities if i.memory.entity.name == "Lisbon")
    assert lisbon.relation == "moved_to"
    assert "user" not in [i.memory.entity.name.lower() for i in profile.entities]
    (marathon,) = profile.goals
    assert marathon.memory.goal.status == pb.GOAL_STATUS_ACTIVE
    assert "marathon" in marathon.memory.text
    assert [i.memory.episode.source_id for i in profile.episodes][:1] in (
        ["c"],
        ["d"],
        ["e"],
        ["f"],
    )
    assert profile.counts.episodes == 6
    assert profile.counts.psyche == 2
    assert profile.counts.goals == profile.counts.active_goals == 1
    assert profile.counts.entities >= 3
    assert "hiking" in profile.context_block and "Lisbon" in profile.context_block
    assert "marathon" in profile.context_block
    # Deterministic: the same store and as_of, the same profile.
    at = NOW + timedelta(hours=1)
    assert await client.get_profile("u1", as_of=at) == await client.get_profile("u1", as_of=at)
    one = await client.get_profile("u1", max_items=1)
    assert len(one.psyche) == len(one.entities) == len(one.episodes) == 1
    # As of before anything was said: nothing.
    empty = await client.get_profile("u1", as_of=recent - timedelta(days=90))
    assert not (empty.psyche or empty.goals or empty.entities or empty.episodes)


async def test_profile_of_unknown_user_is_empty(client: AsyncPersonaClient) -> None:
    profile = await client.get_profile("nobody")
    assert not (profile.psyche or profile.goals or profile.entities or profile.episodes)
    assert profile.counts.episodes == 0
    assert profile.as_of.ToDatetime(UTC) <= datetime.now(UTC)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"user_id": ""}, "user_id"),
        ({"user_id": "x" * 129}, "user_id"),
        ({"max_items": 101}, "max_items"),
        ({"max_items": -1}, "max_items"),
    ],
)
async def test_profile_rejects_bad_input(
    client: AsyncPersonaClient, kwargs: dict[str, object], field: str
) -> None:
    args = {"user_id": "u1", **kwargs}
    user_id = args.pop("user_id")
    with pytest.raises(InvalidArgumentError) as caught:
        await client.get_profile(user_id, **args)  # type: ignore[arg-type]
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert field in json.dumps([v.field for v in caught.value.field_violations])


async def test_profile_is_per_tenant(
    client: AsyncPersonaClient, client_b: AsyncPersonaClient
) -> None:
    await client.ingest("u1", [Item("I love chess.", "a", occurred_at=NOW)])
    assert (await client.get_profile("u1")).counts.psyche == 1
    other = await client_b.get_profile("u1")
    assert other.counts.psyche == 0 and not other.psyche
