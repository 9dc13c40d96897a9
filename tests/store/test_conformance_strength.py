"""Strength's store side, on every store: citations (`MemoryOps.reinforce`) and the per-type
counts of the profile (`MemoryOps.counts`)."""

from __future__ import annotations

from datetime import timedelta

from persona_server.domain.models import ChangeKind, GoalStatus, MemoryType, UserRef
from persona_server.ports.graph_store import DerivedWrite, GraphStore

from .helpers import T0, by_id, entity, episode, fact, goal, new_user, psyche, put, units


async def _derived(store: GraphStore, user: UserRef) -> dict[str, str]:
    ep = episode("s1", "Alice likes tea and plans to run a marathon.", T0)
    await put(store, user, [ep])
    tea = psyche("likes tea", key="tea", last_reinforced_at=T0)
    run = goal("run a marathon", key="marathon")
    done = goal("learn to swim", key="swim", status=GoalStatus.ACHIEVED)
    me = entity("user")
    lisbon = entity("Lisbon")
    lives = fact(me, "lives_in", lisbon)
    old = fact(me, "lives_in", entity("Porto"), invalid_at=T0)
    memories = [tea, run, done, me, lisbon, lives, old]
    await store.memories.write_derived(
        user, DerivedWrite(ep.id, memories, by_id(memories, units(len(memories))))
    )
    return {"episode": ep.id, "tea": tea.id, "run": run.id}


async def test_reinforce_counts_citations_and_keeps_the_latest_time(
    store: GraphStore, user: UserRef
) -> None:
    ids = await _derived(store, user)
    seq = await store.changes.latest_seq(user)
    later = T0 + timedelta(days=30)
    done = await store.memories.reinforce(user, [ids["tea"], "ps_missing", ids["tea"]], later)
    assert done == [ids["tea"]]  # unknown ids and repeats skipped
    tea = (await store.memories.get_many(user, [ids["tea"]]))[ids["tea"]]
    assert tea.cited_count == 1
    assert tea.mention_count == 1  # a citation is not a mention
    assert tea.last_reinforced_at == later
    # An earlier citation counts but never moves the time back.
    assert await store.memories.reinforce(user, [ids["tea"], ids["episode"]], T0) == [
        ids["tea"],
        ids["episode"],
    ]
    found = await store.memories.get_many(user, [ids["tea"], ids["episode"]])
    assert found[ids["tea"]].cited_count == 2
    assert found[ids["tea"]].last_reinforced_at == later
    assert found[ids["episode"]].cited_count == 1
    changes = await store.changes.since(user, seq, 100)
    assert [(c.kind, c.memory_id) for c in changes] == [
        (ChangeKind.UPDATED, ids["tea"]),
        (ChangeKind.UPDATED, ids["tea"]),
        (ChangeKind.UPDATED, ids["episode"]),
    ]


async def test_reinforce_stays_inside_its_tenant(store: GraphStore, user: UserRef) -> None:
    ids = await _derived(store, user)
    other = UserRef(tenant="other-" + user.tenant, user_id=user.user_id)
    assert await store.memories.reinforce(other, [ids["tea"]], T0) == []
    assert await store.memories.reinforce(new_user(), [ids["tea"]], T0) == []
    tea = (await store.memories.get_many(user, [ids["tea"]]))[ids["tea"]]
    assert tea.cited_count == 0
    assert not await store.users.exists(other)


async def test_counts_per_type(store: GraphStore, user: UserRef) -> None:
    assert (await store.memories.counts(user)).by_type == dict.fromkeys(MemoryType, 0)
    await _derived(store, user)
    counts = await store.memories.counts(user)
    assert counts.by_type == {
        MemoryType.EPISODE: 1,
        MemoryType.PSYCHE: 1,
        MemoryType.GOAL: 2,
        MemoryType.ENTITY: 2,  # Porto was never written: the old fact points nowhere
        MemoryType.FACT: 1,  # the invalidated one is not counted
    }
    assert counts.active_goals == 1
    # Derived memories were recorded at T0, the episode now: a count as of T0 leaves it out.
    before = await store.memories.counts(user, recorded_by=T0)
    assert before.by_type[MemoryType.EPISODE] == 0
    assert before.by_type[MemoryType.GOAL] == 2
    assert (await store.memories.counts(new_user())).active_goals == 0
