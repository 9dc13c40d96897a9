"""GetProfile's service on every store, against a fixed clock: dormant memories hidden, shown
with include_dormant and revived by a new mention; content and order on a hand-made user."""

from __future__ import annotations

from datetime import datetime, timedelta

from persona_server.domain.models import GoalStatus, Memory, UserRef
from persona_server.domain.strength import Decay
from persona_server.ports.graph_store import DerivedWrite, GraphStore
from persona_server.services.profile import ProfileService
from persona_server.services.user_profile import ProfileQuery, UserProfileService

from .helpers import T0, by_id, entity, episode, fact, goal, new_user, psyche, put, units

NOW = T0 + timedelta(days=365)


def service(store: GraphStore, now: datetime = NOW) -> UserProfileService:
    profile = ProfileService(store, decay=Decay(), clock=lambda: now)
    return UserProfileService(store, profile, clock=lambda: now)


async def write(store: GraphStore, user: UserRef, memories: list[Memory], source: str) -> None:
    # The episode is the user's latest event, so NOW is the user's present (decay_time).
    ep = episode(source, f"episode {source}", NOW)
    await put(store, user, [ep])
    await store.memories.write_derived(
        user, DerivedWrite(ep.id, memories, by_id(memories, units(len(memories))))
    )


def days_ago(n: float) -> dict[str, object]:
    at = NOW - timedelta(days=n)
    return {"occurred_at": at, "last_reinforced_at": at}


async def test_profile_content_and_order(store: GraphStore, user: UserRef) -> None:
    me = entity("user")
    ana = entity("Ana", **days_ago(3), mention_count=4)
    lisbon = entity("Lisbon", **days_ago(1))
    acme = entity("Acme", **days_ago(30))
    memories: list[Memory] = [
        psyche("likes tea", key="tea", **days_ago(100)),  # once, long ago
        psyche("likes hiking", key="hike", mention_count=3, **days_ago(10)),
        psyche("is patient", key="patient", **days_ago(1)),
        goal("run a marathon", key="run", **days_ago(5)),
        goal("learn Greek", key="greek", status=GoalStatus.ACHIEVED, **days_ago(1)),
        me,
        ana,
        lisbon,
        acme,
        fact(me, "sister_of", ana),
        fact(me, "lives_in", lisbon),
        fact(me, "worked_at", acme, invalid_at=NOW - timedelta(days=2)),
    ]
    await write(store, user, memories, "s1")
    profile = await service(store).get(ProfileQuery(user, max_items=5))

    decay = Decay()
    strengths = {m.text: decay.strength(m, NOW) for m in memories}
    assert [i.memory.text for i in profile.psyche] == ["likes hiking", "is patient", "likes tea"]
    assert strengths["likes hiking"] > strengths["is patient"] > strengths["likes tea"]
    assert [i.strength for i in profile.psyche] == [
        strengths[i.memory.text] for i in profile.psyche
    ]
    assert [i.memory.text for i in profile.goals] == ["run a marathon"]  # active goals only
    assert [(i.memory.text, i.relation) for i in profile.entities] == [
        ("Ana", "sister_of"),
        ("Lisbon", "lives_in"),
        ("Acme", ""),  # the only fact linking it to the user is no longer valid
    ]
    assert [i.memory.source_id for i in profile.episodes] == ["s1"]  # type: ignore[attr-defined]
    counts = profile.counts
    assert counts.active_goals == 1
    assert "likes hiking" in profile.context_block and "Ana (other, sister_of)" in (
        profile.context_block
    )
    again = await service(store).get(ProfileQuery(user, max_items=5))
    assert again == profile  # deterministic
    two = await service(store).get(ProfileQuery(user, max_items=2))
    assert [i.memory.text for i in two.psyche] == ["likes hiking", "is patient"]


async def test_dormant_hidden_shown_and_revived(store: GraphStore, user: UserRef) -> None:
    old = psyche("likes tea", key="tea", **days_ago(600))  # 0.5 * 0.5 ** 5 < 0.05
    fresh = psyche("likes hiking", key="hike", **days_ago(1))
    await write(store, user, [old, fresh], "s1")
    svc = service(store)

    shown = await svc.get(ProfileQuery(user))
    assert [i.memory.text for i in shown.psyche] == ["likes hiking"]
    both = await svc.get(ProfileQuery(user, include_dormant=True))
    assert [i.memory.text for i in both.psyche] == ["likes hiking", "likes tea"]
    assert both.psyche[1].strength < 0.05
    # Strength is computed at as_of: a year on, the fresh one is weaker, still awake.
    later = await svc.get(ProfileQuery(user, as_of=NOW + timedelta(days=100)))
    assert [i.memory.text for i in later.psyche] == ["likes hiking"]
    assert later.psyche[0].strength < shown.psyche[0].strength

    # A new mention revives it: the same memory, counted again, its age restarted.
    revived = old.model_copy(
        update={"mention_count": 2, "last_reinforced_at": NOW - timedelta(hours=1)}
    )
    await write(store, user, [revived], "s2")
    after = await svc.get(ProfileQuery(user))
    assert [i.memory.id for i in after.psyche] == [old.id, fresh.id]
    assert after.psyche[0].strength > 0.6


async def test_decay_runs_on_the_users_time(store: GraphStore, user: UserRef) -> None:
    """Memories age to the user's latest event, not to the wall clock: a user away for years
    comes back to the same picture; an explicit as_of still ages them to that instant."""
    await write(store, user, [psyche("likes hiking", key="hike", **days_ago(1))], "s1")
    years_on = NOW + timedelta(days=3 * 365)
    away = await service(store, now=years_on).get(ProfileQuery(user))
    assert [i.memory.text for i in away.psyche] == ["likes hiking"]
    at_now = await service(store).get(ProfileQuery(user))
    assert away.psyche[0].strength == at_now.psyche[0].strength
    asked = await service(store, now=years_on).get(ProfileQuery(user, as_of=years_on))
    assert asked.psyche == []

    # When the user speaks again years on, the old preference has faded.
    await put(store, user, [episode("s2", "a new day", years_on)])
    back = await service(store, now=years_on).get(ProfileQuery(user))
    assert back.psyche == []
    assert [i.memory.text for i in back.episodes] == ["a new day", "episode s1"]


async def test_profile_is_per_tenant(store: GraphStore, user: UserRef) -> None:
    await write(store, user, [psyche("likes tea", key="tea", **days_ago(1))], "s1")
    other = UserRef(tenant="other-" + user.tenant, user_id=user.user_id)
    for stranger in (other, new_user()):
        profile = await service(store).get(ProfileQuery(stranger))
        assert not (profile.psyche or profile.goals or profile.entities or profile.episodes)
        assert sum(profile.counts.by_type.values()) == 0
