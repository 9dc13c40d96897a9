"""The pure parts of the context feed: resume tokens, view differences, and a subscriber's
buffer (coalescing, the bound, one shared update for streams in step)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from persona_server.domain.ids import new_id
from persona_server.domain.models import ChangeKind, Episode, Fact, MemoryType, UserRef
from persona_server.services import resume_token
from persona_server.services.context_view import View, diff, merge_change, merge_label
from persona_server.services.feed_hub import ContextGroup, ContextSpec, Subscriber
from persona_server.services.results import (
    Change,
    DeletedRef,
    ResyncEvent,
    ScoredMemory,
    UpdateEvent,
)

USER = UserRef(tenant="t", user_id="u")
NOW = datetime(2024, 5, 1, tzinfo=UTC)


def ep(text: str) -> Episode:
    return Episode(id=new_id(MemoryType.EPISODE), source_id=text, text=text, recorded_at=NOW)


def view(*memories: Any) -> View:
    return View.ranked(
        [ScoredMemory(m, 1.0 / (i + 1)) for i, m in enumerate(memories)], by_type=False
    )


# --- resume tokens -----------------------------------------------------------------------


def test_tokens_carry_the_position_and_the_context() -> None:
    ids = (new_id(MemoryType.EPISODE), new_id(MemoryType.FACT), "imported:ünïcode", "x")
    token = resume_token.encode(USER, 42, ids)
    assert resume_token.decode(USER, token) == resume_token.ResumePoint(42, ids)
    # Minted ids take 17 bytes, not their 35 characters.
    raw = base64.urlsafe_b64decode(token + "==")
    assert len(raw) == 19 + 2 * 17 + (3 + len("imported:ünïcode".encode())) + (3 + 1)


def test_a_context_too_large_to_carry_resumes_unknown() -> None:
    ids = tuple(new_id(MemoryType.EPISODE) for _ in range(resume_token.MAX_CONTEXT_IDS + 1))
    assert resume_token.decode(USER, resume_token.encode(USER, 7, ids)).context is None


@pytest.mark.parametrize("cut", [1, 5, 20])
def test_damaged_tokens_are_refused(cut: int) -> None:
    token = resume_token.encode(USER, 3, (new_id(MemoryType.EPISODE),))
    with pytest.raises(resume_token.InvalidResumeTokenError):
        resume_token.decode(USER, token[:-cut])
    with pytest.raises(resume_token.InvalidResumeTokenError):
        resume_token.decode(USER, token + "AAAA")


def test_a_token_of_another_user_is_refused() -> None:
    token = resume_token.encode(USER, 3, ())
    with pytest.raises(resume_token.InvalidResumeTokenError, match="another user"):
        resume_token.decode(UserRef(tenant="t", user_id="v"), token)
    with pytest.raises(resume_token.InvalidResumeTokenError):
        resume_token.decode(USER, "!!not base64!!")


def test_version_1_tokens_still_resume_with_the_context_unknown() -> None:
    import hashlib

    tag = hashlib.sha256(b"t\x00u").hexdigest()[:16]
    raw = json.dumps({"v": 1, "u": tag, "s": 9}, separators=(",", ":")).encode()
    token = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    assert resume_token.decode(USER, token) == resume_token.ResumePoint(9, None)


# --- differences between views ---------------------------------------------------------


def test_diff_names_entries_changes_and_departures() -> None:
    a, b, c, d = ep("a"), ep("b"), ep("c"), ep("d")
    b2 = b.model_copy(update={"mention_count": 2})
    before = {m.id: m for m in (a, b, c)}
    after = view(d, b2, a)  # d is new, b changed, a moved down, c went
    labels = {d.id: ChangeKind.ADDED, b.id: ChangeKind.UPDATED}
    got = {ch.memory_id: (ch.kind, ch.rank) for ch in diff(before, after, labels)}
    assert got == {
        d.id: (ChangeKind.ADDED, 1),
        b.id: (ChangeKind.UPDATED, 2),
        c.id: (ChangeKind.LEFT, 0),
    }
    deleted = diff(before, view(a, b), {c.id: ChangeKind.DELETED})
    assert [(ch.kind, ch.item) for ch in deleted] == [
        (ChangeKind.DELETED, DeletedRef(c.id, MemoryType.EPISODE))
    ]


def test_diff_from_ids_only_trusts_the_change_log() -> None:
    a, b, c = ep("a"), ep("b"), ep("c")
    f = Fact(id=new_id(MemoryType.FACT), subject_id="x", predicate="p", text="f", recorded_at=NOW)
    held: dict[str, Any] = dict.fromkeys([a.id, b.id, f.id])
    labels = {b.id: ChangeKind.UPDATED, f.id: ChangeKind.INVALIDATED}
    got = {ch.memory_id: ch.kind for ch in diff(held, view(a, b, c), labels)}
    # a unchanged: not sent; b changed: sent; c was not held: it entered; f: invalidated.
    assert got == {b.id: ChangeKind.UPDATED, c.id: ChangeKind.ENTERED, f.id: ChangeKind.INVALIDATED}


def test_merges() -> None:
    assert merge_label(None, ChangeKind.UPDATED) is ChangeKind.UPDATED
    assert merge_label(ChangeKind.ADDED, ChangeKind.UPDATED) is ChangeKind.ADDED
    assert merge_label(ChangeKind.ADDED, ChangeKind.DELETED) is ChangeKind.DELETED
    m = ScoredMemory(ep("a"), 1.0)
    added = Change(ChangeKind.ADDED, m, 2)
    assert merge_change(added, Change(ChangeKind.UPDATED, m, 1)) == Change(ChangeKind.ADDED, m, 1)
    left = Change(ChangeKind.LEFT, DeletedRef(m.memory.id, MemoryType.EPISODE))
    assert merge_change(added, left) == left


# --- a subscriber's buffer ---------------------------------------------------------------


def subscriber(first: View, limit: int = 256) -> Subscriber:
    group = ContextGroup(ContextSpec("", 10, frozenset()), None, first)
    return Subscriber(None, group, 1, limit)  # type: ignore[arg-type]  # no feed needed here


def update(before: View, after: View, seq: int) -> UpdateEvent:
    held = {e.memory.id: e.memory for e in before.entries}
    return UpdateEvent(seq, diff(held, after, {}), after.members(), after.ids)


def test_streams_in_step_share_one_update() -> None:
    a, b = ep("a"), ep("b")
    v1, v2 = view(a), view(b, a)
    subs = [subscriber(v1), subscriber(v1)]
    shared = update(v1, v2, 2)
    for s in subs:
        s.offer(v2, 2, shared)
    assert [s.take() for s in subs] == [shared, shared]
    assert subs[0].take() is None


def test_a_lagging_stream_gets_its_changes_coalesced_then_resyncs() -> None:
    memories = [ep(str(i)) for i in range(7)]
    views = [view(*reversed(memories[: i + 1])) for i in range(7)]
    sub = subscriber(views[0], limit=3)
    for i in range(1, 3):
        sub.offer(views[i], i + 1, update(views[i - 1], views[i], i + 1))
    assert sub.pending == 2
    event = sub.take()
    assert isinstance(event, UpdateEvent) and event.seq == 3
    # Ranks as of the latest view, not as first offered.
    assert {c.memory_id: c.rank for c in event.changes} == {memories[2].id: 1, memories[1].id: 2}
    for i in range(3, 7):  # the fourth pending memory passes the bound
        sub.offer(views[i], i + 1, update(views[i - 1], views[i], i + 1))
        assert sub.pending <= 3
    resync = sub.take()
    assert isinstance(resync, ResyncEvent) and resync.seq == 7
    assert [r.memory.id for r in resync.outcome.results] == list(views[6].ids)
    assert sub.take() is None
