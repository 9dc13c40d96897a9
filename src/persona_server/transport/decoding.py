"""Requests that do not decode are INVALID_ARGUMENT naming the field, not UNKNOWN.

grpc turns an exception in a request deserializer into UNKNOWN, with the parser's message in
the details. A client that sends bytes which are not the request message (a string field that
is not UTF-8, a lone surrogate encoded anyway, a corrupt length) deserves the same answer as any
other bad input: INVALID_ARGUMENT with a field violation. So deserializers are wrapped: a
failure becomes an `Undecodable` value, and the handler refuses it before the servicer runs.
The wire is walked once more to name the offending string field (`items[2].text`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError

from persona_server.domain.errors import FieldViolation, InvalidArgumentError
from persona_server.transport.errors import to_status
from persona_server.transport.handlers import Deserializer, Handler, rebuild

_WIRE_VARINT, _WIRE_FIXED64, _WIRE_LEN, _WIRE_FIXED32 = 0, 1, 2, 5


@dataclass(frozen=True)
class Undecodable:
    """What a guarded deserializer returns instead of raising."""

    field: str  # a field path, or "request" when the bytes are not a message at all
    problem: str


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def find_bad_string(descriptor: Descriptor, data: bytes, prefix: str = "") -> str | None:
    """The path of the first string field whose bytes are not UTF-8, if any (None also when
    the structure itself is broken: the caller then names the whole request)."""
    counts: dict[int, int] = {}
    pos = 0
    try:
        while pos < len(data):
            key, pos = _varint(data, pos)
            number, wire = key >> 3, key & 7
            if wire == _WIRE_VARINT:
                _, pos = _varint(data, pos)
                continue
            if wire in (_WIRE_FIXED64, _WIRE_FIXED32):
                pos += 8 if wire == _WIRE_FIXED64 else 4
                continue
            if wire != _WIRE_LEN:
                return None
            size, pos = _varint(data, pos)
            chunk, pos = data[pos : pos + size], pos + size
            field = descriptor.fields_by_number.get(number)
            if field is None:
                continue
            index = counts.get(number, 0)
            counts[number] = index + 1
            path = _path(prefix, field, index)
            found = _bad_in(field, chunk, path)
            if found is not None:
                return found
    except DecodeError:
        return None
    return None


def _is_map(field: FieldDescriptor) -> bool:
    entry = field.message_type
    return entry is not None and bool(entry.GetOptions().map_entry)


def _path(prefix: str, field: FieldDescriptor, index: int) -> str:
    name = f"{prefix}.{field.name}" if prefix else field.name
    if field.is_repeated and not _is_map(field):
        return f"{name}[{index}]"
    return name


def _bad_in(field: FieldDescriptor, chunk: bytes, path: str) -> str | None:
    if field.type == FieldDescriptor.TYPE_STRING:
        try:
            chunk.decode("utf-8")
        except UnicodeDecodeError:
            return path
        return None
    entry = field.message_type
    if field.type == FieldDescriptor.TYPE_MESSAGE and entry is not None:
        # A map entry is a message of key (1) and value (2), so a bad one is named
        # "metadata.key" or "metadata.value".
        return find_bad_string(entry, chunk, path)
    return None


def guard(deserializer: Deserializer, descriptor: Descriptor) -> Deserializer:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except DecodeError as exc:
            try:
                bad = find_bad_string(descriptor, data)
            except Exception:  # naming the field is a courtesy; refusing is what matters
                bad = None
            if bad is not None:
                return Undecodable(bad, "is not valid UTF-8")
            return Undecodable("request", f"is not a valid {descriptor.name} message ({exc})")

    return deserialize


async def _refuse_undecodable(request: Any, context: Any) -> None:
    if isinstance(request, Undecodable):
        error = InvalidArgumentError([FieldViolation(request.field, request.problem)])
        await context.abort_with_status(to_status(error))


def _request_descriptor(method: str) -> Descriptor | None:
    # "/persona.v1.MemoryService/Recall" -> the method's input type, from the default pool.
    service, _, name = method.strip("/").partition("/")
    try:
        found = descriptor_pool.Default().FindMethodByName(f"{service}.{name}")
    except KeyError:
        return None
    input_type: Descriptor = found.input_type
    return input_type


def with_decode_guard(handler: Handler, method: str) -> Handler:
    descriptor = _request_descriptor(method)
    if descriptor is None or handler.request_deserializer is None:
        return handler
    return rebuild(
        handler,
        check=_refuse_undecodable,
        request_deserializer=guard(handler.request_deserializer, descriptor),
    )


class DecodeGuardInterceptor(grpc.aio.ServerInterceptor):
    """Put last: the handler it returns is what the other interceptors wrap."""

    async def intercept_service(
        self,
        continuation: Any,
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        handler: Handler | None = await continuation(handler_call_details)
        if handler is None:
            return None
        return with_decode_guard(handler, handler_call_details.method)
