"""The retention job over a real embedded store, against a fixed clock: which tenants it
touches, with which cutoff, in batches, and what it writes to the audit log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persona_server.adapters.stores.sqlite import SqliteGraphStore
from persona_server.domain.models import UserRef
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.retention import RetentionJob, RetentionReport
from tests.store.helpers import DIM, MODEL, episode, put

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteGraphStore]:
    s = SqliteGraphStore(tmp_path / "persona.db")
    await s.open(embedding_model=MODEL, dimension=DIM)
    try:
        yield s
    finally:
        await s.close()


async def _seed(store: SqliteGraphStore, user: UserRef) -> None:
    await put(
        store,
        user,
        [
            episode(f"d{n}", f"{user.tenant} note from {n} days ago", days_ago(n))
            for n in (400, 60, 20, 1)
        ],
    )


async def _ages(store: SqliteGraphStore, user: UserRef) -> list[int]:
    chain = await store.episodes.chain(user)
    got = await store.memories.get_many(user, chain)
    # Two reads: a pass running in the background may delete an episode between them.
    return [int(got[i].source_ids[0][1:]) for i in chain if i in got]


async def test_per_tenant_policy_beats_the_global_one_and_zero_keeps_forever(
    store: SqliteGraphStore,
) -> None:
    strict, default, forever = (UserRef(tenant=t, user_id="u") for t in ("strict", "std", "keep"))
    for u in (strict, default, forever):
        await _seed(store, u)
    policy = {"strict": 10, "keep": 0}  # everyone else: the global 90 days
    notified: list[UserRef] = []
    notifier = ChangeNotifier()
    for u in (strict, default, forever):
        notifier.listen(u, lambda u=u: notified.append(u))  # type: ignore[misc]
    job = RetentionJob(store, lambda t: policy.get(t, 90), notifier, clock=lambda: NOW)

    report = await job.run_once()

    assert report == RetentionReport(tenants=2, users=2, episodes=4, derived=0, kept=0)
    assert await _ages(store, strict) == [1]
    assert await _ages(store, default) == [60, 20, 1]
    assert await _ages(store, forever) == [400, 60, 20, 1]
    assert sorted(u.tenant for u in notified) == ["std", "strict"]
    assert await job.run_once() == RetentionReport(tenants=2)  # idempotent


async def test_the_cutoff_moves_with_the_clock(store: SqliteGraphStore) -> None:
    user = UserRef(tenant="t", user_id="u")
    await _seed(store, user)
    now = [NOW]
    job = RetentionJob(store, lambda _t: 30, ChangeNotifier(), clock=lambda: now[0])
    await job.run_once()
    assert await _ages(store, user) == [20, 1]
    now[0] = NOW + timedelta(days=15)
    await job.run_once()
    assert await _ages(store, user) == [1]


async def test_batches_are_bounded_and_audited_without_text(
    store: SqliteGraphStore, caplog: pytest.LogCaptureFixture
) -> None:
    users = [UserRef(tenant="t", user_id=f"u{i}") for i in range(2)]
    for u in users:
        await put(
            store, u, [episode(f"s{i}", f"secret diary {i}", days_ago(100 + i)) for i in range(5)]
        )
    caplog.set_level(logging.INFO, logger="persona.audit")
    job = RetentionJob(store, lambda _t: 30, ChangeNotifier(), batch=3, clock=lambda: NOW)

    report = await job.run_once()

    assert (report.episodes, report.users) == (10, 5)  # batches of 3, 3, 3, 1; one user splits
    for u in users:
        assert await store.episodes.chain(u) == []
    lines = [r for r in caplog.records if getattr(r, "audit", None) == "episodes_expired"]
    assert sum(r.episodes for r in lines) == 10  # type: ignore[attr-defined]
    assert {(r.tenant, r.user_id) for r in lines} == {("t", "u0"), ("t", "u1")}  # type: ignore[attr-defined]
    assert all(r.retention_days == 30 for r in lines)  # type: ignore[attr-defined]
    assert all(r.before == days_ago(30).isoformat() for r in lines)  # type: ignore[attr-defined]
    assert "secret" not in caplog.text


async def _until_ages(store: SqliteGraphStore, user: UserRef, ages: list[int]) -> None:
    for _ in range(1000):
        if await _ages(store, user) == ages:
            return
        await asyncio.sleep(0.01)
    assert await _ages(store, user) == ages


async def test_start_runs_a_pass_at_once_and_stop_ends_it(store: SqliteGraphStore) -> None:
    user = UserRef(tenant="t", user_id="u")
    await _seed(store, user)
    calls: list[str] = []

    def policy(tenant: str) -> int:
        calls.append(tenant)
        return 30

    job = RetentionJob(store, policy, ChangeNotifier(), interval_s=3600, clock=lambda: NOW)
    job.start()
    try:
        await _until_ages(store, user, [20, 1])
    finally:
        # Returns at once although the next pass is an hour away.
        await asyncio.wait_for(job.stop(), 5)
    assert calls == ["t"]
    await job.stop()  # stopping twice is harmless


async def test_a_failing_store_is_retried_at_the_next_pass(store: SqliteGraphStore) -> None:
    user = UserRef(tenant="t", user_id="u")
    await _seed(store, user)
    failures = [RuntimeError("store down")]
    real = store.users.tenants

    async def flaky() -> list[str]:
        if failures:
            raise failures.pop()
        return await real()

    store.users.tenants = flaky  # type: ignore[method-assign]
    job = RetentionJob(store, lambda _t: 30, ChangeNotifier(), interval_s=0.01, clock=lambda: NOW)
    job.start()
    try:
        await _until_ages(store, user, [20, 1])
    finally:
        await job.stop()
