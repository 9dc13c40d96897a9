"""Process-wide wake-ups for the context feed.

A write announces its user here and that user's feed reader (one per user and process,
feed_hub.UserFeed) reads the change log at once, instead of at its next poll. The change log in
the store stays the source of truth: readers also poll it, so several server replicas still see
each other's changes.
"""

from __future__ import annotations

from collections.abc import Callable

from persona_server.domain.models import UserRef


class ChangeNotifier:
    def __init__(self) -> None:
        self._listeners: dict[UserRef, Callable[[], None]] = {}
        self._watchers: list[Callable[[UserRef], None]] = []

    def notify(self, user: UserRef) -> None:
        for watcher in self._watchers:
            watcher(user)
        listener = self._listeners.get(user)
        if listener is not None:
            listener()

    def watch(self, watcher: Callable[[UserRef], None]) -> None:
        """`watcher(user)` is called (on the event loop) after each local write of any user:
        for process-wide caches (services.related_words), beside the feed's per-user readers."""
        self._watchers.append(watcher)

    def listen(self, user: UserRef, listener: Callable[[], None]) -> None:
        """`listener` is called (on the event loop) after each local write of `user`."""
        self._listeners[user] = listener

    def unlisten(self, user: UserRef) -> None:
        self._listeners.pop(user, None)

    def listener_count(self) -> int:
        return len(self._listeners)
