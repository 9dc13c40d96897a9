"""The blocking client's retries and deadlines, scripted with grpcio-testing.

The client runs in a worker thread; the test thread plays the server, taking each RPC the
client makes from the testing channel and terminating it with the status it wants.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import grpc
import grpc_testing
import pytest

import persona
from persona.v1 import memory_service_pb2 as pb
from tests.sdk.fake_service import rich_status

SERVICE = pb.DESCRIPTOR.services_by_name["MemoryService"]
FAST = persona.RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01)
UNAVAILABLE = rich_status(grpc.StatusCode.UNAVAILABLE, "store down", reason="STORE_UNAVAILABLE")


class RecordingChannel(grpc.Channel):  # type: ignore[misc]
    """Passes calls through to the testing channel, remembering each call's timeout and
    metadata (the testing channel drops the timeout, and interceptors cannot wrap it)."""

    def __init__(self, inner: grpc.Channel) -> None:
        self.inner = inner
        self.calls: list[tuple[str, float | None, dict[str, str]]] = []

    def _recording(self, method: str, inner: Callable[..., Any]) -> Callable[..., Any]:
        def call(request: Any, timeout: float | None = None, metadata: Any = None, **_: Any) -> Any:
            self.calls.append((method.rsplit("/", 1)[-1], timeout, dict(metadata or ())))
            return inner(request, timeout=timeout, metadata=metadata)

        return call

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._recording(method, self.inner.unary_unary(method, *args, **kwargs))

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self._recording(method, self.inner.unary_stream(method, *args, **kwargs))

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.inner.stream_unary(method, *args, **kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> Any:
        return self.inner.stream_stream(method, *args, **kwargs)

    def subscribe(self, callback: Any, try_to_connect: bool = False) -> None:
        pass

    def unsubscribe(self, callback: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> RecordingChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


@pytest.fixture
def testing_channel() -> grpc_testing.Channel:
    return grpc_testing.channel([SERVICE], grpc_testing.strict_real_time())


@pytest.fixture
def channel(testing_channel: grpc_testing.Channel) -> RecordingChannel:
    return RecordingChannel(testing_channel)


@pytest.fixture
def client(channel: RecordingChannel) -> persona.PersonaClient:
    return persona.PersonaClient(channel=channel, api_key="k1", retry=FAST, default_timeout_s=10.0)


@pytest.fixture
def run() -> Iterator[Callable[..., Future[Any]]]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield lambda fn, *args, **kwargs: pool.submit(fn, *args, **kwargs)


def _take(testing_channel: grpc_testing.Channel, method: str) -> tuple[Any, Any]:
    _metadata, request, rpc = testing_channel.take_unary_unary(SERVICE.methods_by_name[method])
    return request, rpc


def _fail(rpc: Any, status: grpc.Status) -> None:
    rpc.terminate(None, status.trailing_metadata, status.code, status.details)


def test_recall_unavailable_then_ok_is_retried(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    result = run(client.recall, "u1", "where does she live?")
    request, rpc = _take(testing_channel, "Recall")
    _fail(rpc, UNAVAILABLE)
    retried, rpc = _take(testing_channel, "Recall")
    assert retried == request  # the same request, replayed
    rpc.terminate(pb.RecallResponse(context_block="ok"), (), grpc.StatusCode.OK, "")
    assert result.result(timeout=5).context_block == "ok"
    assert [c[0] for c in channel.calls] == ["Recall", "Recall"]


def test_ingest_without_source_ids_is_not_retried(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    # The first attempt may have stored the episodes; a replay would store them again.
    result = run(client.ingest, "u1", [persona.Item("a", source_id="s1"), persona.Item("b")])
    _request, rpc = _take(testing_channel, "Ingest")
    _fail(rpc, UNAVAILABLE)
    with pytest.raises(persona.UnavailableError) as caught:
        result.result(timeout=5)
    assert caught.value.reason == "STORE_UNAVAILABLE"
    assert len(channel.calls) == 1


def test_ingest_text_is_not_retried(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    result = run(client.ingest, "u1", text="I moved to Lisbon")
    _request, rpc = _take(testing_channel, "Ingest")
    _fail(rpc, UNAVAILABLE)
    with pytest.raises(persona.UnavailableError):
        result.result(timeout=5)
    assert len(channel.calls) == 1


def test_ingest_with_source_ids_is_retried(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    items = [persona.Item("a", source_id="s1"), persona.Item("b", source_id="s2")]
    result = run(client.ingest, "u1", items)
    _request, rpc = _take(testing_channel, "Ingest")
    _fail(rpc, UNAVAILABLE)
    request, rpc = _take(testing_channel, "Ingest")
    assert [i.source_id for i in request.items] == ["s1", "s2"]
    rpc.terminate(
        pb.IngestResponse(results=[pb.IngestResult(episode_id="ep_1")]), (), grpc.StatusCode.OK, ""
    )
    assert result.result(timeout=5).results[0].episode_id == "ep_1"
    assert len(channel.calls) == 2


def test_retries_are_bounded(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    result = run(client.get_memory, "u1", "ep_1")
    for _ in range(FAST.max_attempts):
        _request, rpc = _take(testing_channel, "GetMemory")
        _fail(rpc, UNAVAILABLE)
    with pytest.raises(persona.UnavailableError):
        result.result(timeout=5)
    assert len(channel.calls) == FAST.max_attempts


@pytest.mark.parametrize(
    "status",
    [
        rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "max_results must be between 1 and 100",
            violations=[("max_results", "must be between 1 and 100")],
        ),
        rich_status(grpc.StatusCode.INTERNAL, "internal error"),
        rich_status(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down"),
        rich_status(grpc.StatusCode.DEADLINE_EXCEEDED, "too slow"),
    ],
)
def test_other_errors_are_never_retried(
    status: grpc.Status,
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    result = run(client.recall, "u1", "q", max_results=500)
    _request, rpc = _take(testing_channel, "Recall")
    _fail(rpc, status)
    with pytest.raises(persona.PersonaError) as caught:
        result.result(timeout=5)
    assert caught.value.code == status.code
    assert len(channel.calls) == 1


def test_retry_waits_for_the_servers_retry_delay(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    run: Callable[..., Future[Any]],
) -> None:
    result = run(client.delete_memory, "u1", "ep_1")
    _request, rpc = _take(testing_channel, "DeleteMemory")
    failed_at = time.monotonic()
    _fail(rpc, rich_status(grpc.StatusCode.UNAVAILABLE, "busy", retry_delay_s=0.3))
    _request, rpc = _take(testing_channel, "DeleteMemory")
    assert time.monotonic() - failed_at >= 0.3
    rpc.terminate(pb.DeleteMemoryResponse(deleted_ids=["ep_1"]), (), grpc.StatusCode.OK, "")
    assert list(result.result(timeout=5).deleted_ids) == ["ep_1"]


def test_no_retry_past_the_deadline(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    # The server asks for 5 s; the call has 0.5 s: fail now rather than after the deadline.
    started = time.monotonic()
    result = run(client.recall, "u1", "q", timeout=0.5)
    _request, rpc = _take(testing_channel, "Recall")
    _fail(rpc, rich_status(grpc.StatusCode.UNAVAILABLE, "busy", retry_delay_s=5.0))
    with pytest.raises(persona.UnavailableError):
        result.result(timeout=5)
    assert time.monotonic() - started < 1.0
    assert len(channel.calls) == 1


def test_every_call_has_a_deadline_and_the_api_key(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    calls: list[tuple[Callable[[], Any], str, Any]] = [
        (lambda: client.ingest("u1", text="hi"), "Ingest", pb.IngestResponse()),
        (lambda: client.recall("u1", "q"), "Recall", pb.RecallResponse()),
        (
            lambda: client.ask_structured("u1", "q", {"type": "object"}),
            "AskStructured",
            pb.AskStructuredResponse(),
        ),
        (lambda: client.get_memory("u1", "m"), "GetMemory", pb.GetMemoryResponse()),
        (lambda: client.list_memories("u1"), "ListMemories", pb.ListMemoriesResponse()),
        (lambda: client.delete_memory("u1", "m"), "DeleteMemory", pb.DeleteMemoryResponse()),
        (lambda: client.delete_user("u1"), "DeleteUser", pb.DeleteUserResponse()),
    ]
    for fn, method, response in calls:
        result = run(fn)
        _request, rpc = _take(testing_channel, method)
        rpc.terminate(response, (), grpc.StatusCode.OK, "")
        result.result(timeout=5)
    assert [c[0] for c in channel.calls] == [m for _, m, _ in calls]
    for method, timeout, metadata in channel.calls:
        assert timeout is not None and 9.0 < timeout <= 10.0, method
        assert metadata["x-api-key"] == "k1", method


def test_per_call_timeout_overrides_the_default_and_bounds_retries(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    result = run(client.recall, "u1", "q", timeout=2.5)
    _request, rpc = _take(testing_channel, "Recall")
    time.sleep(0.2)
    _fail(rpc, UNAVAILABLE)
    _request, rpc = _take(testing_channel, "Recall")
    rpc.terminate(pb.RecallResponse(), (), grpc.StatusCode.OK, "")
    result.result(timeout=5)
    first, second = channel.calls[0][1], channel.calls[1][1]
    assert first is not None and 2.4 < first <= 2.5
    # The retry gets what is left of the same deadline, not a fresh 2.5 s.
    assert second is not None and second < first - 0.15


def test_stream_has_no_deadline_by_default_and_resumes_after_unavailable(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    method = SERVICE.methods_by_name["StreamContext"]
    stream = client.stream_context("u1", query="trips")
    try:
        first = run(next, stream)
        _md, first_request, rpc = testing_channel.take_unary_stream(method)
        assert first_request.resume_token == ""
        rpc.send_response(
            pb.StreamContextResponse(resume_token="t1", snapshot=pb.ContextSnapshot())
        )
        # (the testing channel drops unread responses on termination: read before failing)
        assert first.result(timeout=5).resume_token == "t1"

        second = run(next, stream)
        rpc.terminate(UNAVAILABLE.trailing_metadata, UNAVAILABLE.code, UNAVAILABLE.details)
        _md, second_request, rpc = testing_channel.take_unary_stream(method)
        # Reconnected where the consumer left off: changes since t1, not a new snapshot.
        assert second_request.resume_token == "t1"
        assert second_request.query == "trips"
        rpc.send_response(pb.StreamContextResponse(resume_token="t2", update=pb.ContextUpdate()))
        assert second.result(timeout=5).resume_token == "t2"
        assert stream.resume_token == "t2"
        assert [c[1] for c in channel.calls] == [None, None]
    finally:
        stream.close()
    rpc.cancelled()  # returns once the call is cancelled (closing the stream did it)
    with pytest.raises(StopIteration):
        next(stream)


def test_stream_honours_a_given_deadline(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    stream = client.stream_context("u1", timeout=30)
    try:
        event = run(next, stream)
        _md, _request, rpc = testing_channel.take_unary_stream(
            SERVICE.methods_by_name["StreamContext"]
        )
        rpc.send_response(pb.StreamContextResponse(resume_token="t1"))
        assert event.result(timeout=5).resume_token == "t1"
    finally:
        stream.close()
    timeout = channel.calls[0][1]
    assert timeout is not None and 29 < timeout <= 30


def test_stream_errors_other_than_unavailable_end_it(
    client: persona.PersonaClient,
    testing_channel: grpc_testing.Channel,
    channel: RecordingChannel,
    run: Callable[..., Future[Any]],
) -> None:
    stream = client.stream_context("u1", resume_token="stale")
    try:
        event = run(next, stream)
        _md, _request, rpc = testing_channel.take_unary_stream(
            SERVICE.methods_by_name["StreamContext"]
        )
        status = rich_status(
            grpc.StatusCode.INVALID_ARGUMENT,
            "resume_token: unknown or expired",
            violations=[("resume_token", "unknown or expired")],
        )
        rpc.terminate(status.trailing_metadata, status.code, status.details)
        with pytest.raises(persona.InvalidArgumentError):
            event.result(timeout=5)
    finally:
        stream.close()
    assert len(channel.calls) == 1
