"""The one place where errors become gRPC statuses with `google.rpc.Status` details.

Every status carries `ErrorInfo` (domain `persona.dev`); invalid input adds `BadRequest` field
violations; retryable failures add `RetryInfo`. Unexpected exceptions become INTERNAL with a
generic message: stack traces stay in the server log.
"""

from __future__ import annotations

import logging

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from persona_server.domain import errors as e
from persona_server.ports.embedder import EmbedderUnavailableError
from persona_server.ports.graph_store import (
    InvalidCursorError,
    SourceConflictError,
    StoreFullError,
    StoreUnavailableError,
)
from persona_server.ports.llm import (
    LlmBudgetExceededError,
    LlmOutputInvalidError,
    LlmRejectedError,
    LlmUnavailableError,
)

ERROR_DOMAIN = "persona.dev"
log = logging.getLogger(__name__)

_CODES: list[tuple[type[e.PersonaError], grpc.StatusCode]] = [
    (e.InvalidArgumentError, grpc.StatusCode.INVALID_ARGUMENT),
    (e.NotFoundError, grpc.StatusCode.NOT_FOUND),
    (e.AlreadyExistsError, grpc.StatusCode.ALREADY_EXISTS),
    (e.FailedPreconditionError, grpc.StatusCode.FAILED_PRECONDITION),
    (e.UnauthenticatedError, grpc.StatusCode.UNAUTHENTICATED),
    (e.PermissionDeniedError, grpc.StatusCode.PERMISSION_DENIED),
    (e.ResourceExhaustedError, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (e.AbortedError, grpc.StatusCode.ABORTED),
    (e.OutOfRangeError, grpc.StatusCode.OUT_OF_RANGE),
    (e.UnavailableError, grpc.StatusCode.UNAVAILABLE),
]


def _pack(message: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)  # type: ignore[arg-type,unused-ignore]
    return packed


def to_persona_error(exc: BaseException) -> e.PersonaError:
    """Port-level exceptions are translated here so that services may let them propagate."""
    if isinstance(exc, e.PersonaError):
        return exc
    if isinstance(exc, SourceConflictError):
        return e.AlreadyExistsError(
            f"{exc}; set replace to update the existing episode",
            metadata={"source_ids": ",".join(exc.source_ids[:20])},
        )
    if isinstance(exc, InvalidCursorError):
        return e.InvalidArgumentError([e.FieldViolation("page_token", str(exc))])
    if isinstance(exc, StoreFullError):
        return e.ResourceExhaustedError(
            "the memory store is out of space; nothing was written. Retry once space is freed",
            reason="STORE_FULL",
            retry_after_s=30.0,
        )
    if isinstance(exc, StoreUnavailableError):
        return e.UnavailableError(
            f"the memory store is unavailable: {exc}", reason="STORE_UNAVAILABLE"
        )
    if isinstance(exc, EmbedderUnavailableError):
        return e.UnavailableError(
            f"the embedding service is unavailable: {exc}", reason="EMBEDDER_UNAVAILABLE"
        )
    if isinstance(exc, LlmUnavailableError):
        return e.UnavailableError(
            f"the LLM is unavailable: {exc.message}",
            reason="LLM_UNAVAILABLE",
            retry_after_s=exc.retry_after_s,
        )
    if isinstance(exc, LlmOutputInvalidError):
        return e.AbortedError(exc.message, reason="LLM_OUTPUT_INVALID")
    if isinstance(exc, LlmBudgetExceededError):
        return e.ResourceExhaustedError(exc.message, reason="LLM_BUDGET_EXHAUSTED")
    if isinstance(exc, LlmRejectedError):
        # Misconfiguration (key, model, unsupported response format): retrying will not help.
        return e.FailedPreconditionError(exc.message, reason="LLM_REJECTED")
    log.exception("unexpected error", exc_info=exc)
    return e.PersonaError("internal error; see the server log", reason="INTERNAL")


def to_status(exc: BaseException) -> grpc.Status:
    error = to_persona_error(exc)
    code = next((c for cls, c in _CODES if isinstance(error, cls)), grpc.StatusCode.INTERNAL)
    details = [
        _pack(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=ERROR_DOMAIN, metadata=error.metadata
            )
        )
    ]
    if isinstance(error, e.InvalidArgumentError):
        details.append(
            _pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in error.violations
                    ]
                )
            )
        )
    retry_after_s = getattr(error, "retry_after_s", None)
    if (
        isinstance(error, e.UnavailableError | e.ResourceExhaustedError)
        and retry_after_s is not None
    ):
        seconds = max(retry_after_s, 0.0)
        delay = duration_pb2.Duration(
            seconds=int(seconds), nanos=int((seconds - int(seconds)) * 1e9)
        )
        details.append(_pack(error_details_pb2.RetryInfo(retry_delay=delay)))
    if isinstance(error, e.ResourceExhaustedError) and error.quota:
        violations = [
            error_details_pb2.QuotaFailure.Violation(subject=q.subject, description=q.description)
            for q in error.quota
        ]
        details.append(_pack(error_details_pb2.QuotaFailure(violations=violations)))
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=error.message, details=details
    )
    return rpc_status.to_status(status)


async def abort(context: grpc.aio.ServicerContext[object, object], exc: BaseException) -> None:
    """Abort the RPC with the mapped status (raises; never returns normally)."""
    await context.abort_with_status(to_status(exc))
