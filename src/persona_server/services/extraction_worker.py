"""The background extraction worker: derives memories from stored episodes, durably.

The store is the queue. Every episode carries its extraction state (pending, done, failed with
reason, attempts and next attempt), and `episodes.due_for_extraction` lists what is due, so
work survives restarts and crashes without any in-memory queue to lose. The worker:

- wakes on ingest (`submit` hints the new episodes, served before the backlog) and otherwise
  polls for due work every `poll_s`, which picks up retries after their backoff and whatever a
  previous process left pending;
- extracts each user's episodes in event-time order, one user at a time per task (so an item
  sees the memories of the items before it) and up to `concurrency` users in parallel;
- records failures on the episode (`record_failure`: transient ones stay pending, others are
  failed; both get a next attempt with exponential backoff, up to the retry policy's limit);
- stops without waiting for in-flight calls: they are cancelled, nothing is written for them,
  and their episodes are still pending for the next start.

One process runs one worker; several replicas sharing a store each run one. A worker extracts a
user only while it holds that user's extraction lease in the store (`users.lease_extraction`,
renewed by a heartbeat every third of its term while the user is worked on, released when
done), and re-reads the episodes once it has it, so a user is worked on by one replica at a
time and no episode is extracted twice. The term is short (30 s by default) so that a replica
killed mid-extraction holds its users up for at most that long; the heartbeat, not the term,
covers a slow model call. A worker whose renewal fails stops working on that user at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from persona_server.domain.models import Episode, ExtractionState, ExtractionStatus, UserRef
from persona_server.ports.graph_store import GraphStore
from persona_server.services.extraction import ExtractionPipeline, RetryPolicy, record_failure
from persona_server.services.ingest import utcnow
from persona_server.services.notifier import ChangeNotifier

log = logging.getLogger(__name__)
DEFAULT_LEASE_S = 30.0  # renewed every third of it while a user is worked on
_MIN_PAUSE_S = 0.05  # between dispatch rounds, so a store that keeps failing cannot spin a core
_STOP_TIMEOUT_S = 5.0
_BACKLOG_EVERY_S = 1.0  # the backlog count for metrics is refreshed at most this often

_Key = tuple[UserRef, str]


def _not_attempted(episode: Episode) -> bool:
    return episode.extraction.state is ExtractionState.PENDING and episode.extraction.attempts == 0


def _event_order(episode: Episode) -> tuple[datetime, int]:
    return (episode.occurred_at or episode.recorded_at, episode.seq)


class ExtractionWorker:
    def __init__(
        self,
        store: GraphStore,
        pipeline: ExtractionPipeline,
        notifier: ChangeNotifier,
        *,
        retry: RetryPolicy | None = None,
        poll_s: float = 5.0,
        concurrency: int = 4,
        batch_limit: int = 200,
        pending_grace_s: float = 0.0,
        lease_s: float = DEFAULT_LEASE_S,
        owner: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """`pending_grace_s` leaves never-attempted episodes alone for that long: used when
        Ingest extracts inline (offline), so the worker only retries failures and recovers
        what a crash left pending, and never races the inline extraction. `lease_s` is how
        long the user lease lasts after each renewal (a heartbeat renews it every third of
        that while the user is worked on); `owner` names this
        worker in the store (default: host, process and a random part)."""
        self._store = store
        self._lease_for = timedelta(seconds=lease_s)
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pipeline = pipeline
        self._notifier = notifier
        self._retry = retry or RetryPolicy()
        self._poll_s = poll_s
        self._concurrency = concurrency
        self._batch_limit = batch_limit
        self._grace = timedelta(seconds=pending_grace_s)
        self._clock = clock
        self._wake = asyncio.Event()
        self._hints: dict[UserRef, list[str]] = {}
        self._busy: dict[UserRef, asyncio.Task[None]] = {}
        self._waiters: dict[_Key, list[asyncio.Future[None]]] = {}
        # Failed episodes are not retried before this, even when recording the failure in the
        # store failed too (a full disk): otherwise every round would call the model again.
        self._not_before: dict[_Key, datetime] = {}
        self._loop: asyncio.Task[None] | None = None
        self._stopping = False
        # Episodes still to extract, across all tenants (None until first counted); read by
        # the `persona.extraction.backlog` gauge.
        self.backlog: int | None = None
        self._backlog_at = 0.0

    # --- lifecycle ---

    def start(self) -> None:
        if self._loop is None:
            self._loop = asyncio.create_task(self._run(), name="persona-extraction-worker")

    async def stop(self) -> None:
        """Cancel everything in flight and return: shutdown never waits on a slow model."""
        self._stopping = True
        tasks = [t for t in (self._loop, *self._busy.values()) if t is not None]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_TIMEOUT_S)
        self._release_all_waiters()

    @property
    def running(self) -> bool:
        return self._loop is not None and not self._loop.done()

    # --- what Ingest uses ---

    def submit(self, user: UserRef, episode_ids: Sequence[str]) -> None:
        """New or replaced episodes of `user`: extract them soon, before older backlog."""
        if self._stopping or not episode_ids:
            return
        self._hints.setdefault(user, []).extend(episode_ids)
        self._wake.set()

    async def wait_for(
        self, user: UserRef, episode_ids: Sequence[str], *, submit: bool = False
    ) -> None:
        """Return once every episode has had an attempt (done, or failed with its reason)
        since it was stored. Cancelled with the caller (the RPC's deadline). `submit` hands
        the episodes to the worker once the waiters are in place."""
        keys = [(user, i) for i in dict.fromkeys(episode_ids)]
        futures: dict[_Key, asyncio.Future[None]] = {}
        loop = asyncio.get_running_loop()
        for key in keys:
            futures[key] = loop.create_future()
            self._waiters.setdefault(key, []).append(futures[key])
        if submit:
            self.submit(user, episode_ids)
        try:
            if self._stopping:
                return
            # An attempt may have finished before the waiters were registered.
            stored = await self._store.memories.get_many(user, [i for _, i in keys])
            for key in keys:
                episode = stored.get(key[1])
                if not isinstance(episode, Episode) or not _not_attempted(episode):
                    self._resolve(key)
            await asyncio.gather(*futures.values())
        finally:
            for key, future in futures.items():
                waiting = self._waiters.get(key)
                if waiting is not None and future in waiting:
                    waiting.remove(future)
                    if not waiting:
                        del self._waiters[key]

    def _resolve(self, key: _Key) -> None:
        for future in self._waiters.pop(key, []):
            if not future.done():
                future.set_result(None)

    def _release_all_waiters(self) -> None:
        for key in list(self._waiters):
            self._resolve(key)

    # --- the loop ---

    async def _run(self) -> None:
        recovering = True
        while not self._stopping:
            self._wake.clear()
            try:
                await self._dispatch(recovering)
                recovering = False
                await self._count_backlog()
            except asyncio.CancelledError:
                raise
            except Exception:
                # The store may be down: the next round tries again, nothing is lost.
                log.exception("extraction worker round failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_s):
                    await self._wake.wait()
            await asyncio.sleep(_MIN_PAUSE_S)

    async def _count_backlog(self) -> None:
        now = asyncio.get_running_loop().time()
        if now - self._backlog_at >= _BACKLOG_EVERY_S:
            self._backlog_at = now
            self.backlog = await self._store.episodes.extraction_backlog()

    def _free_slots(self) -> int:
        return self._concurrency - len(self._busy)

    async def _dispatch(self, recovering: bool = False) -> None:
        """Hinted episodes first, then due ones. The first round after a start also takes
        pending episodes whose retry is not due yet: their backoff was for a dependency that
        was down (a model, a store), and a restart is often what fixed it."""
        for user in list(self._hints):
            if self._free_slots() <= 0:
                return
            if user in self._busy:
                continue  # its task picks the hint up when it finishes
            ids = list(dict.fromkeys(self._hints.pop(user)))
            found = await self._store.memories.get_many(user, ids)
            todo: list[Episode] = []
            for episode_id in ids:
                episode = found.get(episode_id)
                if isinstance(episode, Episode) and _not_attempted(episode):
                    todo.append(episode)
                else:
                    # Gone, or attempted since it was stored: by another replica, which held
                    # the user's lease when this one asked.
                    self._resolve((user, episode_id))
            self._spawn(user, todo)
        if self._free_slots() <= 0:
            return
        now = self._clock()
        if len(self._not_before) > 1024:
            self._not_before = {k: t for k, t in self._not_before.items() if t > now}
        horizon = now + timedelta(seconds=self._retry.max_s) if recovering else now
        due = await self._store.episodes.due_for_extraction(horizon, self._batch_limit)
        by_user: dict[UserRef, list[Episode]] = {}
        for user, episode in due:
            if user in self._busy:
                continue
            cooldown = self._not_before.get((user, episode.id))
            if cooldown is not None and cooldown > now:
                continue
            retry_at = episode.extraction.next_attempt_at
            waiting = retry_at is not None and retry_at > now
            if waiting and episode.extraction.state is not ExtractionState.PENDING:
                continue  # a failure the model caused waits for its backoff
            if self._grace and _not_attempted(episode):
                since = episode.extraction.updated_at or episode.recorded_at
                if since > now - self._grace:
                    continue
            by_user.setdefault(user, []).append(episode)
        for user, episodes in by_user.items():
            if self._free_slots() <= 0:
                break
            self._spawn(user, episodes)

    def _spawn(self, user: UserRef, episodes: list[Episode]) -> None:
        if not episodes:
            return
        task = asyncio.create_task(self._work(user, sorted(episodes, key=_event_order)))
        self._busy[user] = task

    async def _work(self, user: UserRef, episodes: list[Episode]) -> None:
        """Extract one user's episodes in order while holding the user's lease in the store,
        so that no other replica's worker extracts them at the same time."""
        leased = False
        heartbeat: asyncio.Task[None] | None = None
        try:
            leased = await self._lease(user)
            if not leased:
                # Another replica is extracting this user. Due episodes come back at the next
                # poll; ones an Ingest here waits for are asked about again then.
                waited = [e.id for e in episodes if (user, e.id) in self._waiters]
                if waited:
                    self._hints.setdefault(user, []).extend(waited)
                return
            work = asyncio.current_task()
            assert work is not None
            heartbeat = asyncio.create_task(self._hold_lease(user, work))
            try:
                todo = await self._still_to_do(user, episodes)
            except Exception:
                # The store may be down: the episodes stay due for a later round.
                log.exception("extraction worker could not re-read episodes")
                return
            for episode in todo:
                if self._stopping:
                    return
                await self._extract_one(user, episode)
        finally:
            if heartbeat is not None:
                heartbeat.cancel()
            self._busy.pop(user, None)
            if leased:
                with contextlib.suppress(Exception):
                    await self._store.users.release_extraction(user, self.owner)
                if not self._stopping:
                    self._wake.set()  # the user may have more due work, or a hint waiting

    async def _hold_lease(self, user: UserRef, work: asyncio.Task[None]) -> None:
        """Renew the user's lease every third of its term while `work` runs. If a renewal
        fails (the store is down, or the lease ran out and another replica took it), `work`
        is cancelled: its current episode stays as it was, due again later, rather than
        risking two replicas extracting one user at once."""
        while True:
            await asyncio.sleep(self._lease_for.total_seconds() / 3)
            if not await self._lease(user):
                log.warning(
                    "extraction lease lost; stopping this user", extra={"user": user.user_id}
                )
                work.cancel()
                return

    async def _lease(self, user: UserRef) -> bool:
        now = self._clock()
        try:
            return await self._store.users.lease_extraction(
                user, self.owner, now, now + self._lease_for
            )
        except Exception as exc:
            log.warning(
                "could not take the extraction lease",
                extra={"user": user.user_id, "error": f"{type(exc).__name__}: {exc}"[:300]},
            )
            return False

    async def _still_to_do(self, user: UserRef, episodes: list[Episode]) -> list[Episode]:
        """The episodes as they are now, without those attempted since they were read (by
        another replica, before this one got the lease)."""
        found = await self._store.memories.get_many(user, [e.id for e in episodes])
        todo = []
        for seen in episodes:
            now = found.get(seen.id)
            if not isinstance(now, Episode) or now.extraction != seen.extraction:
                self._resolve((user, seen.id))
                continue
            todo.append(now)
        return todo

    async def _extract_one(self, user: UserRef, episode: Episode) -> None:
        key = (user, episode.id)
        try:
            await self._pipeline.process(user, [episode])
            self._not_before.pop(key, None)
        except asyncio.CancelledError:
            raise  # shutdown: the episode stays as it was, due at the next start
        except Exception as exc:
            attempts = episode.extraction.attempts + 1
            delay = timedelta(seconds=self._retry.delay_s(attempts))
            self._not_before[key] = self._clock() + delay
            log.warning(
                "extraction failed",
                extra={
                    "episode_id": episode.id,
                    "attempts": attempts,
                    "error": f"{type(exc).__name__}: {exc}"[:300],
                },
            )
            try:
                await record_failure(
                    self._store, user, [episode], exc, self._pipeline.extractor_name, self._retry
                )
            except Exception:
                log.exception("could not record the extraction failure")
        self._resolve(key)
        self._notifier.notify(user)


class WorkerExtraction:
    """The `ExtractionScheduler` for costly extractors: Ingest returns once the episodes are
    stored (pending); the worker extracts them. With `wait`, Ingest waits for the attempt."""

    inline = False

    def __init__(self, worker: ExtractionWorker) -> None:
        self._worker = worker

    async def submit(
        self, user: UserRef, episodes: Sequence[Episode], *, wait: bool
    ) -> dict[str, ExtractionStatus]:
        episode_ids = [e.id for e in episodes]
        if wait:
            await self._worker.wait_for(user, episode_ids, submit=True)
        else:
            self._worker.submit(user, episode_ids)
        # The worker writes what it did to the store; the caller reads the outcome there.
        return {}
