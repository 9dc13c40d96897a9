"""StreamContext: a snapshot of a user's context, then what changes in it, with heartbeats.

The context is a ranked view (context_view): Recall's ranking for the subscription's query, or
the user's profile without one. The feed hub (feed_hub) keeps one change-log reader per user and
process and offers each stream the difference between successive views; this module turns a
stream's place there into events, in order, with a heartbeat after `heartbeat_s` of silence.
The change log in the store is the source of truth, so a stream resumes from its token on any
replica.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime

from persona_server.services.commands import StreamQuery
from persona_server.services.feed_hub import FeedHub
from persona_server.services.ingest import utcnow
from persona_server.services.results import HeartbeatEvent, StreamEvent


class ContextFeed:
    def __init__(self, hub: FeedHub, clock: Callable[[], datetime] = utcnow) -> None:
        self.hub = hub
        self._clock = clock

    async def stream(self, q: StreamQuery) -> AsyncIterator[StreamEvent]:
        sub, first = await self.hub.subscribe(q)
        try:
            sub.start_heartbeats(q.heartbeat_s)
            if first is not None:
                yield first
                sub.sent()
            while True:
                event = sub.take()
                if event is None:
                    if not sub.heartbeat_due:
                        await sub.wait()
                        continue
                    event = HeartbeatEvent(sub.seq, self._clock(), sub.view.ids)
                yield event
                sub.sent()
        finally:
            # Also on cancellation (the client went away): nothing of this stream remains.
            self.hub.unsubscribe(sub)
