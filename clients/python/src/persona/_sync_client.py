"""PersonaClient: the blocking client, on a plain (sync) gRPC channel.

Deliberately not a wrapper that runs the async client in a thread: a sync channel works in any
program (scripts, WSGI workers, notebooks with a running loop) and is thread-safe.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import grpc
from google.protobuf.message import Message

from persona import _channel, _convert, _graph, _requests
from persona._channel import ChannelOptions, TlsConfig
from persona._errors import from_rpc_error
from persona._graph import GraphRecord
from persona._retry import STREAM_RETRY, Attempts, Deadline, RetryPolicy
from persona._stream import StreamState
from persona._types import IngestItemLike, MemoryTypeLike, TimeRangeLike, TimestampLike
from persona.v1 import graph_pb2, memory_pb2, memory_service_pb2_grpc, profile_pb2
from persona.v1 import knowledge_pb2 as kpb
from persona.v1 import memory_service_pb2 as pb

__all__ = ["ContextStream", "PersonaClient"]

_R = TypeVar("_R", bound=Message)


class PersonaClient:
    """Persona's blocking client, with the same methods and semantics as AsyncPersonaClient.

    Use it as a context manager, or call `close()`. `channel=` injects a ready channel (for
    tests, interceptors, or a shared channel); the client then leaves closing it to the caller.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        api_key: str | None = None,
        tls: TlsConfig = False,
        default_timeout_s: float | None = 10.0,
        retry: RetryPolicy | None = None,
        channel_options: ChannelOptions = (),
        channel: grpc.Channel | None = None,
        stream_retry: RetryPolicy | None = None,
    ) -> None:
        if (target is None) == (channel is None):
            raise TypeError("give either a target ('host:port') or a channel")
        self._metadata = _channel.call_metadata(api_key)
        self._default_timeout_s = _channel.check_timeout("default_timeout_s", default_timeout_s)
        self._retry = retry or RetryPolicy()
        self._stream_retry = stream_retry or STREAM_RETRY
        self._owns_channel = channel is None
        if channel is None:
            assert target is not None
            creds = _channel.credentials(tls)
            opts = _channel.options(channel_options)
            channel = (
                grpc.insecure_channel(target, options=opts)
                if creds is None
                else grpc.secure_channel(target, creds, options=opts)
            )
        self._channel = channel
        self._stub: Any = memory_service_pb2_grpc.MemoryServiceStub(channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def _unary(
        self,
        method: str,
        request: Message,
        response_type: type[_R],
        *,
        timeout: float | None,
        retry_safe: bool,
    ) -> _R:
        rpc = getattr(self._stub, method)
        timeout = _channel.check_timeout("timeout", timeout)
        attempts = Attempts(
            self._retry,
            Deadline(self._default_timeout_s if timeout is None else timeout),
            retry_safe=retry_safe,
        )
        while True:
            try:
                response = rpc(request, timeout=attempts.timeout(), metadata=self._metadata)
                return cast(_R, response)
            except grpc.RpcError as exc:
                time.sleep(attempts.failed(exc))

    def ingest(
        self,
        user_id: str,
        items: Iterable[IngestItemLike] | None = None,
        *,
        text: str | None = None,
        replace: bool = False,
        wait_for_extraction: bool = False,
        timeout: float | None = None,
    ) -> pb.IngestResponse:
        """Store items (or one `text`) for a user. Retried on UNAVAILABLE only when every item
        has a source id, since the server then recognises a replay."""
        request = _requests.ingest(
            user_id, items, text, replace=replace, wait_for_extraction=wait_for_extraction
        )
        return self._unary(
            "Ingest",
            request,
            pb.IngestResponse,
            timeout=timeout,
            retry_safe=_requests.ingest_is_idempotent(request),
        )

    def recall(
        self,
        user_id: str,
        query: str,
        *,
        max_results: int = 10,
        types: Iterable[MemoryTypeLike] | MemoryTypeLike = (),
        time_range: TimeRangeLike | None = None,
        metadata: Mapping[str, str] | None = None,
        explain: bool = False,
        include_history: bool = False,
        as_of: TimestampLike | None = None,
        include_dormant: bool = False,
        timeout: float | None = None,
    ) -> pb.RecallResponse:
        request = _requests.recall(
            user_id,
            query,
            max_results=max_results,
            types=types,
            time_range=time_range,
            metadata=metadata,
            explain=explain,
            include_history=include_history,
            as_of=as_of,
            include_dormant=include_dormant,
        )
        return self._unary("Recall", request, pb.RecallResponse, timeout=timeout, retry_safe=True)

    def ask_structured(
        self,
        user_id: str,
        question: str,
        schema: Mapping[str, Any] | str | bytes,
        *,
        max_memories: int = 0,
        timeout: float | None = None,
    ) -> pb.AskStructuredResponse:
        request = _requests.ask_structured(user_id, question, schema, max_memories=max_memories)
        return self._unary(
            "AskStructured", request, pb.AskStructuredResponse, timeout=timeout, retry_safe=True
        )

    def stream_context(
        self,
        user_id: str,
        *,
        query: str = "",
        max_results: int = 0,
        types: Iterable[MemoryTypeLike] | MemoryTypeLike = (),
        resume_token: str = "",
        heartbeat_seconds: int = 0,
        include_dormant: bool = False,
        timeout: float | None = None,
    ) -> ContextStream:
        """Subscribe to a user's context: `for event in client.stream_context(...)`.

        The call is cancelled when the stream is closed (`close()`, leaving `with`, or garbage
        collection). `close()` may be called from another thread to end a blocked iteration.
        """
        request = _requests.stream_context(
            user_id,
            query=query,
            max_results=max_results,
            types=types,
            resume_token=resume_token,
            heartbeat_seconds=heartbeat_seconds,
            include_dormant=include_dormant,
        )
        return ContextStream(
            self,
            StreamState(request, self._stream_retry, _channel.check_timeout("timeout", timeout)),
        )

    def get_memory(
        self, user_id: str, memory_id: str, *, timeout: float | None = None
    ) -> pb.GetMemoryResponse:
        request = _requests.get_memory(user_id, memory_id)
        return self._unary(
            "GetMemory", request, pb.GetMemoryResponse, timeout=timeout, retry_safe=True
        )

    def list_memories(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        types: Iterable[MemoryTypeLike] | MemoryTypeLike = (),
        include_invalidated: bool = False,
        timeout: float | None = None,
    ) -> pb.ListMemoriesResponse:
        request = _requests.list_memories(
            user_id,
            page_size=page_size,
            page_token=page_token,
            types=types,
            include_invalidated=include_invalidated,
        )
        return self._unary(
            "ListMemories", request, pb.ListMemoriesResponse, timeout=timeout, retry_safe=True
        )

    def iter_memories(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        types: Iterable[MemoryTypeLike] | MemoryTypeLike = (),
        include_invalidated: bool = False,
        timeout: float | None = None,
    ) -> Iterator[memory_pb2.Memory]:
        """Every memory of the user, page after page (`timeout` applies to each page)."""
        type_list = [types] if isinstance(types, str | int) else list(types)
        page_token = ""
        while True:
            page = self.list_memories(
                user_id,
                page_size=page_size,
                page_token=page_token,
                types=type_list,
                include_invalidated=include_invalidated,
                timeout=timeout,
            )
            yield from page.memories
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def delete_memory(
        self, user_id: str, memory_id: str, *, timeout: float | None = None
    ) -> pb.DeleteMemoryResponse:
        request = _requests.delete_memory(user_id, memory_id)
        return self._unary(
            "DeleteMemory", request, pb.DeleteMemoryResponse, timeout=timeout, retry_safe=True
        )

    def delete_user(self, user_id: str, *, timeout: float | None = None) -> pb.DeleteUserResponse:
        request = _requests.delete_user(user_id)
        return self._unary(
            "DeleteUser", request, pb.DeleteUserResponse, timeout=timeout, retry_safe=True
        )

    # --- knowledge schemas ---

    def put_knowledge_schema(
        self, name: str, schema: Mapping[str, Any] | str | bytes, *, timeout: float | None = None
    ) -> kpb.PutKnowledgeSchemaResponse:
        """Register (or replace) the tenant's knowledge schema `name`: a JSON Schema of an
        object (a dict, or JSON text sent as is). Putting the same schema again is a no-op."""
        request = kpb.PutKnowledgeSchemaRequest(name=name, json_schema=_convert.json_schema(schema))
        return self._unary(
            "PutKnowledgeSchema",
            request,
            kpb.PutKnowledgeSchemaResponse,
            timeout=timeout,
            retry_safe=True,
        )

    def list_knowledge_schemas(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> kpb.ListKnowledgeSchemasResponse:
        request = kpb.ListKnowledgeSchemasRequest(page_size=page_size, page_token=page_token)
        return self._unary(
            "ListKnowledgeSchemas",
            request,
            kpb.ListKnowledgeSchemasResponse,
            timeout=timeout,
            retry_safe=True,
        )

    def delete_knowledge_schema(
        self, name: str, *, timeout: float | None = None
    ) -> kpb.DeleteKnowledgeSchemaResponse:
        """Delete the schema and every user's document of it (NOT_FOUND if there is none:
        a retried call that had deleted it answers NOT_FOUND)."""
        return self._unary(
            "DeleteKnowledgeSchema",
            kpb.DeleteKnowledgeSchemaRequest(name=name),
            kpb.DeleteKnowledgeSchemaResponse,
            timeout=timeout,
            retry_safe=True,
        )

    def get_knowledge(
        self, user_id: str, name: str, *, timeout: float | None = None
    ) -> kpb.GetKnowledgeResponse:
        """The user's document of schema `name`: `json.loads(response.document_json)`, with
        each field's provenance and history in `response.fields`."""
        return self._unary(
            "GetKnowledge",
            kpb.GetKnowledgeRequest(user_id=user_id, name=name),
            kpb.GetKnowledgeResponse,
            timeout=timeout,
            retry_safe=True,
        )

    def get_profile(
        self,
        user_id: str,
        *,
        max_items: int = 0,
        as_of: TimestampLike | None = None,
        include_dormant: bool = False,
        timeout: float | None = None,
    ) -> profile_pb2.GetProfileResponse:
        """Who the user is now: strongest psyche items, active goals, key entities with their
        relation to the user, recent episodes, counts and a ready-to-prompt `context_block`.
        `max_items` per group (1 to 100; 0 means 10); `as_of` computes it at another time."""
        request = _requests.get_profile(
            user_id, max_items=max_items, as_of=as_of, include_dormant=include_dormant
        )
        return self._unary(
            "GetProfile",
            request,
            profile_pb2.GetProfileResponse,
            timeout=timeout,
            retry_safe=True,
        )

    def export_graph(
        self, user_id: str, *, chunk_size: int = 0, timeout: float | None = None
    ) -> Iterator[graph_pb2.ExportGraphResponse]:
        """The user's whole graph as chunks: every node first, then every edge (see
        AsyncPersonaClient.export_graph). Leaving the loop early cancels the call."""
        request = _graph.export_request(user_id, chunk_size)
        call = self._stub.ExportGraph(
            request, timeout=_channel.check_timeout("timeout", timeout), metadata=self._metadata
        )
        try:
            for chunk in call:
                yield cast(graph_pb2.ExportGraphResponse, chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()

    def import_graph(
        self,
        user_id: str,
        records: Iterable[GraphRecord],
        *,
        timeout: float | None = None,
    ) -> graph_pb2.ImportGraphResponse:
        """Import nodes and edges, nodes first (see AsyncPersonaClient.import_graph)."""
        try:
            response = self._stub.ImportGraph(
                _graph.import_requests(user_id, records),
                timeout=_channel.check_timeout("timeout", timeout),
                metadata=self._metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        return cast(graph_pb2.ImportGraphResponse, response)


class ContextStream:
    """The events of one StreamContext subscription (`persona.v1.StreamContextResponse`).

    Reconnects by itself after UNAVAILABLE or a dropped connection, with backoff and the last
    resume token, and passes `resync` events on (see `AsyncContextStream`); cancels the call
    when closed.
    """

    def __init__(self, client: PersonaClient, state: StreamState) -> None:
        self._client = client
        self._state = state
        self._call: Any = None

    @property
    def resume_token(self) -> str:
        """The token of the last event received: pass it to `stream_context` to resume later."""
        return self._state.resume_token

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> pb.StreamContextResponse:
        while True:
            if self._state.closed:
                raise StopIteration
            if self._call is None:
                self._call = self._client._stub.StreamContext(
                    self._state.next_request(),
                    timeout=self._state.timeout(),
                    metadata=self._client._metadata,
                )
            try:
                event = next(self._call)
            except StopIteration:
                self._call = None
                if self._state.closed:
                    raise
                time.sleep(self._state.ended())
                continue
            except grpc.RpcError as exc:
                self._call = None
                if self._state.closed:  # close() from another thread cancelled the call
                    raise StopIteration from None
                time.sleep(self._state.failed(exc))
                continue
            self._state.received(event)
            return cast(pb.StreamContextResponse, event)

    def close(self) -> None:
        """Stop the subscription now; the server sees the call cancelled."""
        self._state.closed = True
        call, self._call = self._call, None
        if call is not None:
            call.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __del__(self) -> None:
        # During interpreter shutdown there may be nothing left to cancel.
        with contextlib.suppress(Exception):
            self.close()
