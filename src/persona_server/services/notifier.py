"""In-process wake-ups for context streams. The change log in the store stays the source of
truth (streams also poll it), so several server replicas still see each other's changes."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from persona_server.domain.models import UserRef


class ChangeNotifier:
    def __init__(self) -> None:
        self._waiters: defaultdict[UserRef, set[asyncio.Event]] = defaultdict(set)

    def notify(self, user: UserRef) -> None:
        for event in self._waiters.get(user, ()):
            event.set()

    async def wait(self, user: UserRef, seconds: float) -> bool:
        """True if a change for `user` was announced within `seconds`."""
        event = asyncio.Event()
        self._waiters[user].add(event)
        try:
            async with asyncio.timeout(seconds):
                await event.wait()
            return True
        except TimeoutError:
            return False
        finally:
            waiters = self._waiters.get(user)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[user]

    def subscriber_count(self) -> int:
        return sum(len(w) for w in self._waiters.values())
