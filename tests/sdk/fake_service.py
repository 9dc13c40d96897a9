"""A scripted MemoryService on a real in-process gRPC server, for client-side tests.

It is a sync `grpc.server` on a thread pool so that both clients can use it: the async client
from the test's event loop, the blocking client (and the CLI) from the test thread. It records
every call (request, metadata, deadline) and sees stream cancellations as a real server does.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2, message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from persona.v1 import memory_pb2, memory_service_pb2_grpc
from persona.v1 import memory_service_pb2 as pb


def rich_status(
    code: grpc.StatusCode,
    message_text: str,
    *,
    reason: str | None = None,
    violations: list[tuple[str, str]] | None = None,
    retry_delay_s: float | None = None,
    metadata: dict[str, str] | None = None,
) -> grpc.Status:
    """A status shaped as the Persona server sends it (ErrorInfo always, then the rest)."""
    details = []

    def pack(detail: message.Message) -> None:
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)

    pack(
        error_details_pb2.ErrorInfo(
            reason=reason or code.name, domain="persona.dev", metadata=metadata or {}
        )
    )
    if violations:
        pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
    if retry_delay_s is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_delay_s * 1e9))
        pack(error_details_pb2.RetryInfo(retry_delay=delay))
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name), message=message_text, details=details
    )
    return rpc_status.to_status(status)


@dataclass
class Call:
    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


@dataclass
class FakeMemoryService(memory_service_pb2_grpc.MemoryServiceServicer):
    """Answers from `script[method]` (responses or grpc.Status, consumed in order), then from
    `default[method]`. StreamContext sends `stream_events` and then heartbeats until cancelled."""

    script: dict[str, deque[Any]] = field(default_factory=lambda: defaultdict(deque))
    default: dict[str, Any] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    stream_events: list[pb.StreamContextResponse] = field(default_factory=list)
    stream_cancelled: threading.Event = field(default_factory=threading.Event)
    stream_started: threading.Event = field(default_factory=threading.Event)
    heartbeat_interval_s: float = 0.05

    def then(self, method: str, *outcomes: Any) -> FakeMemoryService:
        self.script[method].extend(outcomes)
        return self

    def calls_to(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method]

    def _answer(self, method: str, request: Any, context: grpc.ServicerContext) -> Any:
        self.calls.append(
            Call(method, request, dict(context.invocation_metadata()), context.time_remaining())
        )
        outcome = self.script[method].popleft() if self.script[method] else self.default.get(method)
        if isinstance(outcome, grpc.Status):
            context.abort_with_status(outcome)
        if outcome is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"no scripted answer for {method}")
        return outcome

    def Ingest(self, request: Any, context: Any) -> Any:
        return self._answer("Ingest", request, context)

    def Recall(self, request: Any, context: Any) -> Any:
        return self._answer("Recall", request, context)

    def AskStructured(self, request: Any, context: Any) -> Any:
        return self._answer("AskStructured", request, context)

    def GetMemory(self, request: Any, context: Any) -> Any:
        return self._answer("GetMemory", request, context)

    def ListMemories(self, request: Any, context: Any) -> Any:
        return self._answer("ListMemories", request, context)

    def DeleteMemory(self, request: Any, context: Any) -> Any:
        return self._answer("DeleteMemory", request, context)

    def DeleteUser(self, request: Any, context: Any) -> Any:
        return self._answer("DeleteUser", request, context)

    def StreamContext(
        self, request: Any, context: grpc.ServicerContext
    ) -> Iterator[pb.StreamContextResponse]:
        # The scripted outcome (if any) decides whether this call fails before streaming.
        if self.script["StreamContext"]:
            outcome = self.script["StreamContext"].popleft()
            self.calls.append(Call("StreamContext", request, {}, context.time_remaining()))
            if isinstance(outcome, grpc.Status):
                context.abort_with_status(outcome)
            yield from outcome
            return
        self.calls.append(
            Call(
                "StreamContext",
                request,
                dict(context.invocation_metadata()),
                context.time_remaining(),
            )
        )
        context.add_callback(self.stream_cancelled.set)
        self.stream_started.set()
        yield from self.stream_events
        n = 0
        while context.is_active():
            n += 1
            time.sleep(self.heartbeat_interval_s)
            yield pb.StreamContextResponse(resume_token=f"hb-{n}", heartbeat=pb.Heartbeat())


class FakeServer:
    def __init__(self, service: FakeMemoryService) -> None:
        self.service = service
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        memory_service_pb2_grpc.add_MemoryServiceServicer_to_server(service, self._server)
        port = self._server.add_insecure_port("127.0.0.1:0")
        self.target = f"127.0.0.1:{port}"
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=None)


def memory(
    memory_id: str = "ep_1",
    text: str = "I moved to Lisbon",
    *,
    memory_type: int = memory_pb2.MEMORY_TYPE_EPISODE,
    source_ids: tuple[str, ...] = ("msg-1",),
    occurred_at_s: int | None = 1683554160,  # 2023-05-08T13:56:00Z
) -> memory_pb2.Memory:
    result = memory_pb2.Memory(
        id=memory_id,
        type=memory_type,  # type: ignore[arg-type]
        user_id="u1",
        text=text,
        provenance=memory_pb2.Provenance(source_ids=source_ids),
    )
    if occurred_at_s is not None:
        result.occurred_at.FromSeconds(occurred_at_s)
    return result
