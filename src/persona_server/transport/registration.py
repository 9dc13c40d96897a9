"""MemoryService's method handlers on the server: the generated ones, with StreamContext's
response serializer passing bytes through.

StreamContext sends one change to every stream of a context. grpc serializes each response it
sends, so with the generated handler one event to 1,000 streams is 1,000 SerializeToString
calls of the same message; the servicer serializes each event once instead and yields the
bytes (the wire format is the same `StreamContextResponse`). Everything else is the generated
`add_MemoryServiceServicer_to_server`'s own, collected through a stand-in for the server so
that a regenerated stub (a new RPC) needs no change here.
"""

from __future__ import annotations

from typing import Any

import grpc

from persona.v1 import memory_service_pb2_grpc as svc_grpc
from persona_server.transport.handlers import Handler

STREAM_CONTEXT = "StreamContext"


def pass_through(response: Any) -> bytes:
    """The bytes a servicer serialized itself; a message (none is expected) is serialized."""
    if isinstance(response, bytes):
        return response
    wire: bytes = response.SerializeToString()
    return wire


class _Collected:
    """Takes the place of the server in the generated registration, to keep its handlers."""

    def __init__(self) -> None:
        self.service = ""
        self.handlers: dict[str, Handler] = {}

    def add_generic_rpc_handlers(self, _handlers: Any) -> None:
        pass  # rebuilt from the registered handlers below

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.service = service
        self.handlers = dict(handlers)


def memory_service_handlers(
    servicer: svc_grpc.MemoryServiceServicer,
) -> tuple[str, dict[str, Handler]]:
    """(service name, method name -> handler), StreamContext's with `pass_through`."""
    collected = _Collected()
    svc_grpc.add_MemoryServiceServicer_to_server(servicer, collected)  # type: ignore[arg-type]
    handlers = collected.handlers
    stream = handlers[STREAM_CONTEXT]
    handlers[STREAM_CONTEXT] = grpc.unary_stream_rpc_method_handler(
        stream.unary_stream,  # type: ignore[arg-type]
        request_deserializer=stream.request_deserializer,
        response_serializer=pass_through,
    )
    return collected.service, handlers


def add_memory_service(servicer: svc_grpc.MemoryServiceServicer, server: grpc.aio.Server) -> None:
    service, handlers = memory_service_handlers(servicer)
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
    server.add_registered_method_handlers(service, handlers)
