"""Retry policy and the retry decision both clients share.

Only UNAVAILABLE is retried, and only for calls the caller marks safe (no side effects, or
idempotent): a retried call that had already taken effect must not take effect twice. The
clients keep their own loops (blocking sleep vs. `await asyncio.sleep`); every decision —
whether to retry, how long to wait, how much deadline is left — lives here.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc

from persona._errors import PersonaError, from_rpc_error

__all__ = ["NO_RETRY", "STREAM_RETRY", "Attempts", "Deadline", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter (as gRPC's own retry design, A6).

    The n-th retry waits a random time in [0, min(initial_backoff_s * multiplier**(n-1),
    max_backoff_s)], but never less than the server's `RetryInfo.retry_delay`, and never past
    the call's deadline. `max_attempts` counts the first attempt: 1 disables retries.
    """

    max_attempts: int = 3
    initial_backoff_s: float = 0.2
    max_backoff_s: float = 5.0
    backoff_multiplier: float = 2.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("backoffs must not be negative")
        if self.backoff_multiplier < 1:
            raise ValueError("backoff_multiplier must be at least 1")

    def backoff(self, retry_number: int, rand: Callable[[], float] = random.random) -> float:
        """The jittered wait before retry `retry_number` (1 for the first retry)."""
        ceiling = min(
            self.initial_backoff_s * self.backoff_multiplier ** (retry_number - 1),
            self.max_backoff_s,
        )
        return ceiling * rand()


NO_RETRY = RetryPolicy(max_attempts=1)
# Reconnecting a context stream: a subscription should outlive a server restart or a rolling
# deploy (about a minute of consecutive failures with these numbers). Every event received
# resets the count.
STREAM_RETRY = RetryPolicy(max_attempts=30, initial_backoff_s=0.1, max_backoff_s=5.0)


class Deadline:
    """An absolute point in monotonic time shared by every attempt of one logical call."""

    __slots__ = ("_at",)

    def __init__(self, timeout_s: float | None) -> None:
        self._at = None if timeout_s is None else time.monotonic() + timeout_s

    def remaining(self) -> float | None:
        """Seconds left (never negative), or None when the call has no deadline."""
        if self._at is None:
            return None
        return max(self._at - time.monotonic(), 0.0)


class Attempts:
    """The retry state of one logical call.

    `failed(rpc_error)` returns how long to sleep before the next attempt, or raises the
    PersonaError for the failure when the call must not (or can no longer) be retried.
    """

    def __init__(
        self,
        policy: RetryPolicy,
        deadline: Deadline,
        *,
        retry_safe: bool,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._policy = policy
        self._deadline = deadline
        self._retry_safe = retry_safe
        self._rand = rand
        self._failures = 0

    def timeout(self) -> float | None:
        """The timeout to give the next attempt: what is left of the call's deadline."""
        return self._deadline.remaining()

    def succeeded(self) -> None:
        """A stream made progress: the next failure starts a fresh retry budget."""
        self._failures = 0

    def failed(self, rpc_error: grpc.RpcError) -> float:
        return self.failed_with(from_rpc_error(rpc_error), rpc_error)

    def failed_with(self, error: PersonaError, cause: BaseException | None = None) -> float:
        """As `failed`, for an error already parsed (or one the SDK made up)."""
        delay = self._next_delay(error)
        if delay is None:
            raise error from cause
        return delay

    def _next_delay(self, error: PersonaError) -> float | None:
        self._failures += 1
        if not self._retry_safe or error.code != grpc.StatusCode.UNAVAILABLE:
            return None
        if self._failures >= self._policy.max_attempts:
            return None
        delay = self._policy.backoff(self._failures, self._rand)
        if error.retry_delay is not None:
            delay = max(delay, error.retry_delay)
        remaining = self._deadline.remaining()
        if remaining is not None and delay >= remaining:
            return None  # the retry could not finish before the deadline: fail now, honestly
        return delay
