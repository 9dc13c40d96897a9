"""Persona's Python SDK: typed async and sync clients for the Persona memory service.

    from persona import AsyncPersonaClient, Item

    async with AsyncPersonaClient("127.0.0.1:50051", api_key="...") as client:
        await client.ingest("u1", [Item("I moved to Lisbon", source_id="msg-1")])
        response = await client.recall("u1", "where does the user live?")

The generated messages live in `persona.v1` (`persona.v1.memory_service_pb2`, ...); the clients
return them as they are.
"""

from persona._client import AsyncContextStream, AsyncPersonaClient
from persona._errors import (
    AbortedError,
    AlreadyExistsError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    OutOfRangeError,
    PermissionDeniedError,
    PersonaError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    from_rpc_error,
)
from persona._retry import NO_RETRY, STREAM_RETRY, RetryPolicy
from persona._sync_client import ContextStream, PersonaClient
from persona._types import (
    ChatRoleLike,
    IngestItemLike,
    Item,
    MemoryTypeLike,
    SourceTypeLike,
    TimeRangeLike,
    TimestampLike,
)
from persona._version import __version__

__all__ = [
    "NO_RETRY",
    "STREAM_RETRY",
    "AbortedError",
    "AlreadyExistsError",
    "AsyncContextStream",
    "AsyncPersonaClient",
    "CancelledError",
    "ChatRoleLike",
    "ContextStream",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "IngestItemLike",
    "InternalError",
    "InvalidArgumentError",
    "Item",
    "MemoryTypeLike",
    "NotFoundError",
    "OutOfRangeError",
    "PermissionDeniedError",
    "PersonaClient",
    "PersonaError",
    "ResourceExhaustedError",
    "RetryPolicy",
    "SourceTypeLike",
    "TimeRangeLike",
    "TimestampLike",
    "UnauthenticatedError",
    "UnavailableError",
    "__version__",
    "from_rpc_error",
]
