"""Rich status -> typed exception mapping, on real calls and on hand-made errors."""

from __future__ import annotations

import grpc
import pytest
from google.rpc import status_pb2

import persona
from persona import _errors
from tests.sdk.fake_service import FakeServer, rich_status


class _FakeRpcError(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """Just enough of a failed sync call for from_rpc_error."""

    def __init__(self, status: grpc.Status | None, code: grpc.StatusCode, details: str) -> None:
        self._trailing = status.trailing_metadata if status is not None else ()
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return self._trailing

    def initial_metadata(self) -> tuple[()]:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: object) -> bool:
        return False


def _error(status: grpc.Status) -> persona.PersonaError:
    return _errors.from_rpc_error(_FakeRpcError(status, status.code, status.details))


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, persona.InvalidArgumentError),
        (grpc.StatusCode.NOT_FOUND, persona.NotFoundError),
        (grpc.StatusCode.ALREADY_EXISTS, persona.AlreadyExistsError),
        (grpc.StatusCode.FAILED_PRECONDITION, persona.FailedPreconditionError),
        (grpc.StatusCode.UNAUTHENTICATED, persona.UnauthenticatedError),
        (grpc.StatusCode.PERMISSION_DENIED, persona.PermissionDeniedError),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, persona.ResourceExhaustedError),
        (grpc.StatusCode.ABORTED, persona.AbortedError),
        (grpc.StatusCode.UNAVAILABLE, persona.UnavailableError),
        (grpc.StatusCode.DEADLINE_EXCEEDED, persona.DeadlineExceededError),
        (grpc.StatusCode.INTERNAL, persona.InternalError),
        (grpc.StatusCode.CANCELLED, persona.CancelledError),
        (grpc.StatusCode.UNIMPLEMENTED, persona.PersonaError),
        (grpc.StatusCode.UNKNOWN, persona.PersonaError),
    ],
)
def test_each_status_code_has_its_class(code: grpc.StatusCode, cls: type) -> None:
    error = _error(rich_status(code, "boom"))
    assert type(error) is cls
    assert isinstance(error, persona.PersonaError)
    assert error.code == code
    assert error.message == "boom"
    assert str(error) == f"{code.name}: boom"


def test_invalid_argument_exposes_field_violations_and_reason() -> None:
    error = _error(
        rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "items[3].occurred_at: more than one day in the future",
            violations=[
                ("items[3].occurred_at", "more than one day in the future"),
                ("items[4].text", "must not be empty"),
            ],
        )
    )
    assert isinstance(error, persona.InvalidArgumentError)
    assert error.reason == "INVALID_ARGUMENT"
    assert error.domain == "persona.dev"
    assert error.field_violations == [
        ("items[3].occurred_at", "more than one day in the future"),
        ("items[4].text", "must not be empty"),
    ]
    assert error.field_violations[1].field == "items[4].text"
    assert error.retry_delay is None
    assert len(error.details) == 2  # ErrorInfo + BadRequest, raw


def test_reason_metadata_and_retry_delay() -> None:
    error = _error(
        rich_status(
            grpc.StatusCode.UNAVAILABLE,
            "the memory store is unavailable",
            reason="STORE_UNAVAILABLE",
            retry_delay_s=1.5,
            metadata={"store": "sqlite"},
        )
    )
    assert isinstance(error, persona.UnavailableError)
    assert error.reason == "STORE_UNAVAILABLE"
    assert error.metadata == {"store": "sqlite"}
    assert error.retry_delay == pytest.approx(1.5)


def test_domain_specific_reason_on_generic_code() -> None:
    error = _error(
        rich_status(
            grpc.StatusCode.ALREADY_EXISTS,
            "source id msg-1 exists with other text",
            reason="SOURCE_ID_CONFLICT",
        )
    )
    assert isinstance(error, persona.AlreadyExistsError)
    assert error.reason == "SOURCE_ID_CONFLICT"


def test_status_without_details_falls_back_to_code_name() -> None:
    # What a client sees when nothing listens: no trailer, just a code and gRPC's message.
    error = _errors.from_rpc_error(
        _FakeRpcError(None, grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    )
    assert isinstance(error, persona.UnavailableError)
    assert error.reason == "UNAVAILABLE"
    assert error.domain == ""
    assert error.field_violations == []
    assert error.details == ()


def test_trailer_whose_message_was_rewritten_is_still_read() -> None:
    # rpc_status.from_call rejects a trailer whose message differs from the call's; a proxy
    # may rewrite the message, but the details are still worth reading.
    status = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT, "original", violations=[("user_id", "required")]
    )
    error = _errors.from_rpc_error(
        _FakeRpcError(status, grpc.StatusCode.INVALID_ARGUMENT, "rewritten by a proxy")
    )
    assert error.message == "rewritten by a proxy"
    assert error.field_violations == [("user_id", "required")]


def test_corrupt_trailer_keeps_the_status_code() -> None:
    status = rich_status(grpc.StatusCode.NOT_FOUND, "no such memory")
    broken = ((("grpc-status-details-bin", b"\xff\xff not a status"),),)
    fake = _FakeRpcError(status, grpc.StatusCode.NOT_FOUND, "no such memory")
    fake._trailing = broken[0]
    error = _errors.from_rpc_error(fake)
    assert isinstance(error, persona.NotFoundError)
    assert error.reason == "NOT_FOUND"


def test_errors_from_a_real_call(fake_server: FakeServer) -> None:
    """The trailer survives a real gRPC round trip and the client raises the typed error."""
    fake_server.service.then(
        "Recall",
        rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_results must be between 1 and 100",
            violations=[("max_results", "must be between 1 and 100")],
        ),
    )
    with (
        persona.PersonaClient(fake_server.target) as client,
        pytest.raises(persona.InvalidArgumentError) as caught,
    ):
        client.recall("u1", "where", max_results=0)
    assert caught.value.field_violations == [("max_results", "must be between 1 and 100")]
    assert isinstance(caught.value.__cause__, grpc.RpcError)


async def test_errors_from_a_real_async_call(fake_server: FakeServer) -> None:
    fake_server.service.then(
        "AskStructured",
        rich_status(
            grpc.StatusCode.FAILED_PRECONDITION,
            "no LLM configured; set PERSONA_LLM_MODEL",
            reason="LLM_NOT_CONFIGURED",
        ),
    )
    async with persona.AsyncPersonaClient(fake_server.target) as client:
        with pytest.raises(persona.FailedPreconditionError) as caught:
            await client.ask_structured("u1", "name?", {"type": "object"})
    assert caught.value.reason == "LLM_NOT_CONFIGURED"
    assert caught.value.domain == "persona.dev"


def test_local_conversion_errors_look_like_server_ones() -> None:
    with (
        persona.PersonaClient("127.0.0.1:1") as client,
        pytest.raises(persona.InvalidArgumentError) as caught,
    ):
        client.ingest("u1", [persona.Item("hi", occurred_at="yesterday-ish")])
    assert caught.value.field_violations[0].field == "items[0].occurred_at"
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_rich_status_parse_of_raw_status() -> None:
    # error_for is the one constructor; it also accepts a status with no details at all.
    error = _errors.error_for(
        grpc.StatusCode.PERMISSION_DENIED, "not yours", rich_status=status_pb2.Status(code=7)
    )
    assert isinstance(error, persona.PermissionDeniedError)
    assert error.reason == "PERMISSION_DENIED"
