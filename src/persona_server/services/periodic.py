"""A background job that runs a round at once and then every interval until it is stopped.

The store's housekeeping jobs (change-log pruning, the retention policy) share this loop: a
round that fails (the store is down) is logged and tried again at the next interval, and
stopping cancels the task, so a round in flight ends with its current store transaction
committed whole or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class Periodic:
    def __init__(
        self, name: str, interval_s: float, round_: Callable[[], Awaitable[None]], what: str
    ) -> None:
        self._name = name
        self._interval_s = interval_s
        self._round = round_
        self._what = what  # for the log line of a failed round: "retention pass"
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        while True:
            try:
                await self._round()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the store is down: try again at the next interval
                log.warning(f"{self._what} failed", extra={"error": str(exc)})
            await asyncio.sleep(self._interval_s)
