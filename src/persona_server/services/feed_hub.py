"""Fan-out of the context feed: one change-log reader per user and process, for every stream.

`FeedHub` keeps a `UserFeed` per user with open streams. Its task reads the user's change log
when a local write announces the user (`ChangeNotifier`, at once) and at least every `poll_s`
(writes made through other replicas), then recomputes each distinct context of that user once
(`ContextSpec`: query, max_results, types; streams asking the same share it), diffs it with its
previous view, and offers the difference to the streams of that context (`Subscriber`).

A subscriber's buffer is bounded: pending changes are coalesced per memory, and past
`buffer_limit` memories they are dropped for a resync (the context afresh). Nothing else is
queued per stream, whatever the consumer's pace: its memory is its pending changes and
references to the shared views.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from persona_server.domain.errors import OutOfRangeError, UnavailableError
from persona_server.domain.models import ChangeKind, MemoryType, UserRef
from persona_server.ports.embedder import Embedder
from persona_server.ports.graph_store import GraphStore, MemoryFilter, Vector
from persona_server.services.commands import RecallQuery, StreamQuery
from persona_server.services.context_view import View, diff, merge_change, merge_label
from persona_server.services.notifier import ChangeNotifier
from persona_server.services.profile import ProfileService
from persona_server.services.recall import RecallService
from persona_server.services.results import (
    Change,
    DeletedRef,
    ResyncEvent,
    ScoredMemory,
    SnapshotEvent,
    StreamEvent,
    UpdateEvent,
)
from persona_server.services.resume_token import ResumePoint

log = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5
BUFFER_LIMIT = 256
_PAGE = 500
RESUBSCRIBE = "subscribe again without a resume token to get a fresh snapshot"


@dataclass(frozen=True)
class ContextSpec:
    """What defines a context: streams with equal specs share one view and one computation."""

    query: str
    max_results: int
    types: frozenset[MemoryType]
    include_dormant: bool = False

    @classmethod
    def of(cls, q: StreamQuery) -> ContextSpec:
        return cls(q.query, q.max_results, q.types, q.include_dormant)


class ContextSource:
    """Computes a context's view: Recall for a query (embedded once, by the caller), the profile
    without one. The only place the feed asks what a context holds."""

    def __init__(self, recall: RecallService, profile: ProfileService, embedder: Embedder) -> None:
        self._recall = recall
        self._profile = profile
        self._embedder = embedder

    async def query_vector(self, spec: ContextSpec) -> Vector | None:
        if not spec.query:
            return None
        vector: Vector = (await self._embedder.embed([spec.query]))[0]
        return vector

    async def view(self, user: UserRef, spec: ContextSpec, query_vector: Vector | None) -> View:
        if spec.query:
            outcome = await self._recall.recall(
                RecallQuery(
                    user=user,
                    query=spec.query,
                    max_results=spec.max_results,
                    filter=MemoryFilter(types=spec.types),
                    query_vector=query_vector,
                    passages=False,
                    include_dormant=spec.include_dormant,
                )
            )
            return View.ranked(outcome.results, by_type=False)
        profile = await self._profile.profile(
            user, limit=spec.max_results, types=spec.types, include_dormant=spec.include_dormant
        )
        return View.ranked(profile.scored(), by_type=True)


class ContextGroup:
    def __init__(self, spec: ContextSpec, query_vector: Vector | None, view: View) -> None:
        self.spec = spec
        self.query_vector = query_vector
        self.view = view
        self.subscribers: set[Subscriber] = set()
        self._snapshot: SnapshotEvent | None = None

    def snapshot(self, seq: int) -> SnapshotEvent:
        """The view as a snapshot; one object while the view stands (converted once)."""
        event = self._snapshot
        if event is None or event.seq != seq or event.outcome is not self.view.outcome:
            event = self._snapshot = SnapshotEvent(seq, self.view.outcome, self.view.ids)
        return event


class Subscriber:
    """One stream's place in its context: what it has not sent yet, and as of when."""

    def __init__(self, feed: UserFeed, group: ContextGroup, seq: int, buffer_limit: int) -> None:
        self.feed = feed
        self.group = group
        self.seq = seq
        self.view = group.view  # the context as of `seq`
        self._limit = buffer_limit
        # An update offered to every subscriber of the context alike, until a second one comes
        # before this consumer took the first: then both are merged into `_pending`.
        self._shared: UpdateEvent | None = None
        self._pending: dict[str, Change] = {}
        self._resync = False
        self._failure: BaseException | None = None
        self._ready = asyncio.Event()
        # Heartbeats: one timer per stream, re-armed once per interval rather than per event.
        self._beat_s = 0.0
        self._beat_due = False
        self._sent_at = 0.0
        self._timer: asyncio.TimerHandle | None = None

    @property
    def pending(self) -> int:
        """Memories whose changes wait to be sent (the buffer's fill)."""
        return len(self._pending) + (len(self._shared.changes) if self._shared else 0)

    def offer(self, view: View, seq: int, update: UpdateEvent | None) -> None:
        self.view, self.seq = view, seq
        if update is None or self._resync:
            return  # nothing of this context changed, or a resync will carry it all
        if self._shared is None and not self._pending:
            self._shared = update
        else:
            if self._shared is not None:
                self._pending = {c.memory_id: c for c in self._shared.changes}
                self._shared = None
            for change in update.changes:
                earlier = self._pending.pop(change.memory_id, None)
                self._pending[change.memory_id] = (
                    change if earlier is None else merge_change(earlier, change)
                )
            if len(self._pending) > self._limit:
                self.resync()
        self._ready.set()

    def resync(self) -> None:
        self._pending.clear()
        self._shared = None
        self._resync = True
        self._ready.set()

    def fail(self, exc: BaseException) -> None:
        self._failure = exc
        self._ready.set()

    def take(self) -> StreamEvent | None:
        """The next event to send, or None when the consumer is up to date."""
        self._ready.clear()
        if self._failure is not None:
            raise self._failure
        if self._resync:
            self._resync = False
            return ResyncEvent(self.seq, self.view.outcome, self.view.ids)
        if self._shared is not None:
            event, self._shared = self._shared, None
            return event
        if self._pending:
            # Coalesced over several views: ranks and scores as of the latest one.
            changes = [self._current(c) for c in self._pending.values()]
            self._pending = {}
            return UpdateEvent(self.seq, changes, self.view.members(), self.view.ids)
        return None

    def _current(self, change: Change) -> Change:
        entry = self.view.by_id.get(change.memory_id) if change.rank else None
        if entry is None:
            return change
        return Change(change.kind, ScoredMemory(entry.memory, entry.score), entry.rank)

    async def wait(self) -> None:
        """Until there is something to take, or a heartbeat is due."""
        await self._ready.wait()

    def start_heartbeats(self, every_s: float) -> None:
        loop = asyncio.get_running_loop()
        self._beat_s = every_s
        self._sent_at = loop.time()
        self._timer = loop.call_at(self._sent_at + every_s, self._check_beat)

    @property
    def heartbeat_due(self) -> bool:
        return self._beat_due

    def sent(self) -> None:
        """The consumer took an event: the stream is not silent."""
        self._sent_at = asyncio.get_running_loop().time()
        self._beat_due = False

    def _check_beat(self) -> None:
        loop = asyncio.get_running_loop()
        due = self._sent_at + self._beat_s
        if loop.time() >= due - 0.001:
            self._beat_due = True
            self._ready.set()
            due = loop.time() + self._beat_s
        self._timer = loop.call_at(due, self._check_beat)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class UserFeed:
    """The change-log reader of one user in this process, and the contexts it keeps current."""

    def __init__(self, hub: FeedHub, user: UserRef) -> None:
        self.hub = hub
        self.user = user
        self.seq: int | None = None  # read up to here; None until the first subscriber starts it
        self.groups: dict[ContextSpec, ContextGroup] = {}
        self.lock = asyncio.Lock()
        self.holders = 0  # subscribers attached or attaching: the feed lives while any
        self.task: asyncio.Task[None] | None = None
        self.failed = False  # its reader stopped on a store failure: streams must start anew
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    def subscribers(self) -> list[Subscriber]:
        return [s for g in self.groups.values() for s in g.subscribers]

    async def start(self) -> int:
        """The position to start from (the caller holds the lock)."""
        if self.seq is None:
            self.seq = await self.hub.store.changes.latest_seq(self.user)
            self.hub.notifier.listen(self.user, self.wake)
            self.task = asyncio.create_task(self._run(), name=f"persona-feed-{id(self):x}")
        return self.seq

    async def _run(self) -> None:
        try:
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.hub.poll_s):
                        await self._wake.wait()
                self._wake.clear()
                async with self.lock:
                    await self.refresh()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The store failed: end every stream of the user with the error (UNAVAILABLE for
            # an outage); clients resume with their tokens, here or on another replica.
            log.warning(
                "context feed stopped", extra={"user": self.user.user_id, "error": str(exc)}
            )
            self.hub.fail(self, exc)

    async def read_log(self, after: int, upto: int | None = None) -> _LogRead:
        """What the change log says from `after` (exclusive) to `upto` (inclusive; the end when
        None): each memory's merged kind and its type, and whether entries right after `after`
        were already pruned."""
        labels: dict[str, ChangeKind] = {}
        types: dict[str, MemoryType] = {}
        seq, first, pruned = after, True, False
        while upto is None or seq < upto:
            page = await self.hub.store.changes.since(self.user, seq, _PAGE)
            if upto is not None:
                page = [c for c in page if c.seq <= upto]
            if not page:
                break
            if first and page[0].seq != after + 1:
                pruned = True
            first = False
            for change in page:
                labels[change.memory_id] = merge_label(labels.get(change.memory_id), change.kind)
                types[change.memory_id] = change.memory_type
            seq = page[-1].seq
            if len(page) < _PAGE:
                break
        if upto is not None and seq < upto:
            pruned = True  # entries up to `upto` were written, and are gone
        return _LogRead(seq, labels, types, pruned)

    async def refresh(self) -> None:
        """Read the change log on from `seq`; recompute and offer every context it touched
        (all of them: relevance is the ranking's to decide). The caller holds the lock."""
        assert self.seq is not None
        found = await self.read_log(self.seq)
        if found.seq == self.seq:
            return
        groups = list(self.groups.values())
        views = await asyncio.gather(
            *(self.hub.source.view(self.user, g.spec, g.query_vector) for g in groups)
        )
        # A write that committed while the views were read may show in them already: its log
        # entries name what it did (a memory that appears is new, not merely entering). They
        # only label; the next refresh reads them as usual and finds nothing left to send.
        labels, types = dict(found.labels), dict(found.types)
        for change in await self.hub.store.changes.since(self.user, found.seq, _PAGE):
            labels[change.memory_id] = merge_label(labels.get(change.memory_id), change.kind)
            types[change.memory_id] = change.memory_type
        changes = [
            diff({e.memory.id: e.memory for e in g.view.entries}, v, labels, types)
            for g, v in zip(groups, views, strict=True)
        ]
        changes = await self.with_invalidated(changes)
        self.seq = found.seq
        for group, view, group_changes in zip(groups, views, changes, strict=True):
            group.view = view
            update = (
                UpdateEvent(found.seq, group_changes, view.members(), view.ids)
                if group_changes
                else None
            )
            for sub in group.subscribers:
                sub.offer(view, found.seq, update)
                if found.pruned:
                    # This reader fell behind the log's retention: what it missed cannot be
                    # named change by change, so every stream gets the context afresh.
                    sub.resync()

    async def with_invalidated(self, changes: Sequence[list[Change]]) -> list[list[Change]]:
        """Invalidated memories are sent as they are now (kept, with `invalid_at`)."""
        wanted = sorted(
            {
                c.memory_id
                for group in changes
                for c in group
                if c.kind is ChangeKind.INVALIDATED and isinstance(c.item, DeletedRef)
            }
        )
        if not wanted:
            return list(changes)
        found = await self.hub.store.memories.get_many(self.user, wanted)

        def filled(c: Change) -> Change:
            memory = found.get(c.memory_id)
            if c.kind is not ChangeKind.INVALIDATED or memory is None:
                return c
            return Change(c.kind, ScoredMemory(memory, 0.0), 0)

        return [[filled(c) for c in group] for group in changes]


@dataclass(frozen=True)
class _LogRead:
    seq: int
    labels: Mapping[str, ChangeKind]
    types: Mapping[str, MemoryType]
    pruned: bool


class FeedHub:
    def __init__(
        self,
        store: GraphStore,
        source: ContextSource,
        notifier: ChangeNotifier,
        *,
        poll_s: float = POLL_INTERVAL_S,
        buffer_limit: int = BUFFER_LIMIT,
    ) -> None:
        self.store = store
        self.source = source
        self.notifier = notifier
        self.poll_s = poll_s
        self.buffer_limit = buffer_limit
        self._feeds: dict[UserRef, UserFeed] = {}
        self._closed = False

    def feed_count(self) -> int:
        return len(self._feeds)

    def subscriber_count(self) -> int:
        return sum(len(f.subscribers()) for f in self._feeds.values())

    def subscribers(self, user: UserRef) -> list[Subscriber]:
        feed = self._feeds.get(user)
        return feed.subscribers() if feed is not None else []

    def position(self, user: UserRef) -> int | None:
        """How far this process has read the user's change log (None: no open stream)."""
        feed = self._feeds.get(user)
        return feed.seq if feed is not None else None

    def tasks(self) -> list[asyncio.Task[None]]:
        return [f.task for f in self._feeds.values() if f.task is not None]

    async def subscribe(self, q: StreamQuery) -> tuple[Subscriber, StreamEvent | None]:
        """Attach a stream; returns it and its first event (a snapshot, a resync, the update
        since its resume token, or None when nothing changed since the token)."""
        if self._closed:
            raise UnavailableError("the server is shutting down", reason="SHUTTING_DOWN")
        feed = self._feeds.get(q.user)
        if feed is None:
            feed = self._feeds[q.user] = UserFeed(self, q.user)
        feed.holders += 1
        try:
            async with feed.lock:
                return await self._attach(feed, q)
        except BaseException:
            feed.holders -= 1
            self._release(feed)
            raise

    async def _attach(
        self, feed: UserFeed, q: StreamQuery
    ) -> tuple[Subscriber, StreamEvent | None]:
        if feed.failed:
            # Waited for the lock of a reader that has just failed: start over on a new one.
            raise UnavailableError("the memory store failed; retry", reason="STORE_UNAVAILABLE")
        await feed.start()
        spec = ContextSpec.of(q)
        group = feed.groups.get(spec)
        resume = q.resume_after
        if group is None or resume is not None:
            # Catch up first, so that the snapshot (or the resumed difference) and its position
            # agree as closely as the store allows.
            await feed.refresh()
            group = feed.groups.get(spec)
        assert feed.seq is not None
        seq = feed.seq
        if group is None:
            vector = await self.source.query_vector(spec)
            group = ContextGroup(spec, vector, await self.source.view(q.user, spec, vector))
            feed.groups[spec] = group
        view = group.view
        first: StreamEvent | None
        if resume is None:
            first = group.snapshot(seq)
        elif resume.context is None:
            first = ResyncEvent(seq, view.outcome, view.ids)
        else:
            try:
                changes = await self._since_token(feed, resume, group)
            except BaseException:
                if not group.subscribers and feed.groups.get(spec) is group:
                    del feed.groups[spec]
                raise
            first = UpdateEvent(seq, changes, view.members(), view.ids) if changes else None
        sub = Subscriber(feed, group, seq, self.buffer_limit)
        group.subscribers.add(sub)
        return sub, first

    async def _since_token(
        self, feed: UserFeed, resume: ResumePoint, group: ContextGroup
    ) -> list[Change]:
        """What changed in the context since a token; OUT_OF_RANGE when the change log no
        longer reaches back to it."""
        assert feed.seq is not None and resume.context is not None
        if resume.seq > feed.seq:
            raise OutOfRangeError(
                "resume_token is ahead of this user's change log (was the user deleted?); "
                + RESUBSCRIBE,
                field="resume_token",
                reason="RESUME_TOKEN_OUT_OF_RANGE",
            )
        found = await feed.read_log(resume.seq, upto=feed.seq)
        if found.pruned:
            raise OutOfRangeError(
                "resume_token is older than the change log keeps "
                f"(PERSONA_CHANGE_LOG_MAX_ENTRIES, PERSONA_CHANGE_LOG_MAX_AGE_S); {RESUBSCRIBE}",
                field="resume_token",
                reason="RESUME_TOKEN_OUT_OF_RANGE",
            )
        held = dict.fromkeys(resume.context, None)
        changes = diff(held, group.view, found.labels, found.types)
        return (await feed.with_invalidated([changes]))[0]

    def unsubscribe(self, sub: Subscriber) -> None:
        sub.close()
        feed = sub.feed
        group = sub.group
        if sub not in group.subscribers:
            return
        group.subscribers.discard(sub)
        if not group.subscribers and feed.groups.get(group.spec) is group:
            del feed.groups[group.spec]
        feed.holders -= 1
        self._release(feed)

    def _release(self, feed: UserFeed) -> None:
        if feed.holders > 0 or self._feeds.get(feed.user) is not feed:
            return
        del self._feeds[feed.user]
        self.notifier.unlisten(feed.user)
        if feed.task is not None:
            feed.task.cancel()

    def fail(self, feed: UserFeed, exc: BaseException) -> None:
        """End every stream of `feed` with `exc`; the feed goes (a new stream starts afresh)."""
        feed.failed = True
        for sub in feed.subscribers():
            sub.fail(exc)
        if self._feeds.get(feed.user) is feed:
            del self._feeds[feed.user]
            self.notifier.unlisten(feed.user)

    async def close(self) -> None:
        """Shutdown: every open stream ends with UNAVAILABLE (clients resume elsewhere)."""
        self._closed = True
        feeds = list(self._feeds.values())
        for feed in feeds:
            self.fail(
                feed,
                UnavailableError(
                    "the server is shutting down; resume with the last token",
                    reason="SHUTTING_DOWN",
                ),
            )
        tasks = [f.task for f in feeds if f.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
