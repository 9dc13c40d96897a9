"""Domain errors. The transport maps each class to one gRPC status code in one place
(`transport/errors.py`); services raise these and never import grpc.

`reason` is the stable machine-readable `ErrorInfo.reason` clients branch on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str  # proto field path, e.g. "items[3].occurred_at"
    description: str


class PersonaError(Exception):
    reason = "INTERNAL"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.metadata = dict(metadata or {})


class InvalidArgumentError(PersonaError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: Sequence[FieldViolation], message: str | None = None) -> None:
        # "max_results must be between 1 and 100, got 0": readable alone in a CLI or a log.
        text = message or "; ".join(f"{v.field} {v.description}" for v in violations)
        super().__init__(text)
        self.violations = list(violations)


class NotFoundError(PersonaError):
    reason = "NOT_FOUND"


class AlreadyExistsError(PersonaError):
    reason = "SOURCE_ID_CONFLICT"


class FailedPreconditionError(PersonaError):
    reason = "FAILED_PRECONDITION"


class UnauthenticatedError(PersonaError):
    reason = "UNAUTHENTICATED"


class PermissionDeniedError(PersonaError):
    reason = "PERMISSION_DENIED"


@dataclass(frozen=True)
class QuotaViolation:
    subject: str  # what the quota applies to, e.g. "tenant:acme" or "user:acme/u1"
    description: str


class ResourceExhaustedError(PersonaError):
    """A limit was reached. `retry_after_s` when waiting may help (a rate limit, or a quota
    whose usage is re-read that often); `quota` names the quotas that were exceeded."""

    reason = "RESOURCE_EXHAUSTED"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after_s: float | None = None,
        quota: Sequence[QuotaViolation] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_s = retry_after_s
        self.quota = list(quota)


class OutOfRangeError(PersonaError):
    """A position the server no longer (or not yet) has, such as a resume token older than the
    change log keeps. `field` names the request field that carried it."""

    reason = "OUT_OF_RANGE"

    def __init__(self, message: str, *, field: str = "", reason: str | None = None) -> None:
        super().__init__(message, reason=reason, metadata={"field": field} if field else None)


class AbortedError(PersonaError):
    reason = "ABORTED"


class UnavailableError(PersonaError):
    """A dependency (store, LLM, embedder) is down; retrying after `retry_after_s` may succeed."""

    reason = "UNAVAILABLE"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        retry_after_s: float = 1.0,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_after_s = retry_after_s
