"""The SDK's exception hierarchy, built in one place from a call's rich status.

The server puts a `google.rpc.Status` in the `grpc-status-details-bin` trailer: `ErrorInfo`
always (domain "persona.dev"), `BadRequest` for invalid input, `RetryInfo` when a retry may
succeed. Both clients turn every failed call into one of these exceptions with
`from_rpc_error`, so callers branch on a class (or on `.reason`) and never parse trailers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AbortedError",
    "AlreadyExistsError",
    "CancelledError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "PersonaError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "from_rpc_error",
]

_DETAILS_KEY = "grpc-status-details-bin"


class FieldViolation(NamedTuple):
    """One invalid field of a request: `field` is a proto path such as `items[3].occurred_at`."""

    field: str
    description: str


class PersonaError(Exception):
    """A failed Persona call (or a request the SDK could not build).

    `code` is the gRPC status code and `reason` the stable `ErrorInfo.reason` to branch on
    (e.g. `SOURCE_ID_CONFLICT`, `LLM_NOT_CONFIGURED`); without an `ErrorInfo` (a transport
    failure such as no server listening) `reason` is the code's name. `retry_delay` is the
    server's `RetryInfo` in seconds, when it sent one. `details` holds the raw `Any` details.
    """

    # The status code of an instance built without one (each subclass names its own).
    default_code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        retry_delay: float | None = None,
        field_violations: Iterable[FieldViolation] = (),
        details: Sequence[any_pb2.Any] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: grpc.StatusCode = code or self.default_code
        self.reason = reason or self.code.name
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.retry_delay = retry_delay
        self.field_violations: list[FieldViolation] = list(field_violations)
        self.details: tuple[any_pb2.Any, ...] = tuple(details)

    def __str__(self) -> str:
        return f"{self.code.name}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )


class CancelledError(PersonaError):
    """The call was cancelled (CANCELLED). Not `asyncio.CancelledError`, which is never wrapped."""

    default_code = grpc.StatusCode.CANCELLED


class InvalidArgumentError(PersonaError):
    """The request was rejected as invalid; `field_violations` names the offending fields."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceededError(PersonaError):
    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFoundError(PersonaError):
    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(PersonaError):
    """For example a source id re-ingested with other text (reason `SOURCE_ID_CONFLICT`)."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDeniedError(PersonaError):
    default_code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhaustedError(PersonaError):
    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPreconditionError(PersonaError):
    """For example AskStructured without an LLM configured (reason `LLM_NOT_CONFIGURED`)."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class AbortedError(PersonaError):
    default_code = grpc.StatusCode.ABORTED


class OutOfRangeError(PersonaError):
    """For example a StreamContext resume token older than the server keeps changes (reason
    `RESUME_TOKEN_OUT_OF_RANGE`): subscribe again without a token. `metadata["field"]` names the
    request field."""

    default_code = grpc.StatusCode.OUT_OF_RANGE


class InternalError(PersonaError):
    default_code = grpc.StatusCode.INTERNAL


class UnavailableError(PersonaError):
    """The server or one of its dependencies is unreachable; retrying later may succeed."""

    default_code = grpc.StatusCode.UNAVAILABLE


class UnauthenticatedError(PersonaError):
    default_code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: dict[grpc.StatusCode, type[PersonaError]] = {
    cls.default_code: cls
    for cls in (
        CancelledError,
        InvalidArgumentError,
        DeadlineExceededError,
        NotFoundError,
        AlreadyExistsError,
        PermissionDeniedError,
        ResourceExhaustedError,
        FailedPreconditionError,
        AbortedError,
        OutOfRangeError,
        InternalError,
        UnavailableError,
        UnauthenticatedError,
    )
}


def error_for(
    code: grpc.StatusCode,
    message: str,
    *,
    rich_status: status_pb2.Status | None = None,
) -> PersonaError:
    """The exception for a status code, filled from the rich status' details when present."""
    reason = domain = ""
    metadata: dict[str, str] = {}
    retry_delay: float | None = None
    violations: list[FieldViolation] = []
    details: Sequence[any_pb2.Any] = ()
    if rich_status is not None:
        details = list(rich_status.details)
        for detail in details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                violations.extend(
                    FieldViolation(v.field, v.description) for v in bad.field_violations
                )
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    cls = _BY_CODE.get(code, PersonaError)
    return cls(
        message,
        code=code,
        reason=reason,
        domain=domain,
        metadata=metadata,
        retry_delay=retry_delay,
        field_violations=violations,
        details=details,
    )


def invalid_argument(field: str, description: str) -> InvalidArgumentError:
    """A request the SDK cannot even build (a value it cannot convert), shaped like the server's
    INVALID_ARGUMENT so callers handle both the same way."""
    return InvalidArgumentError(
        f"{field}: {description}", field_violations=[FieldViolation(field, description)]
    )


def _rich_status(rpc_error: Any) -> status_pb2.Status | None:
    try:
        return rpc_status.from_call(rpc_error)
    except ValueError:
        # from_call refuses a trailer whose code or message differs from the call's (a proxy
        # may rewrite the message); the details are still the server's, so read them anyway.
        pass
    for key, value in rpc_error.trailing_metadata() or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def from_rpc_error(rpc_error: grpc.RpcError) -> PersonaError:
    """Turn a failed call (sync `grpc.RpcError` or `grpc.aio.AioRpcError`) into a PersonaError."""
    code_of = getattr(rpc_error, "code", None)
    if code_of is None:  # an RpcError that is not a Call carries no status at all
        return PersonaError(str(rpc_error) or "RPC failed", code=grpc.StatusCode.UNKNOWN)
    code = code_of()
    message = rpc_error.details() or ""
    try:
        rich = _rich_status(rpc_error)
    except Exception:  # a corrupt trailer must not hide the status code itself
        rich = None
    return error_for(code, message, rich_status=rich)
