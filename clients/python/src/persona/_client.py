"""AsyncPersonaClient: the asyncio client, on `grpc.aio`."""

# `timeout=` here is the gRPC deadline, sent to the server and bounding retries; an
# `asyncio.timeout` around the call (what ASYNC109 suggests) would do neither.
# ruff: noqa: ASYNC109

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar, cast

import grpc
import grpc.aio
from google.protobuf.message import Message

from persona import _channel, _convert, _graph, _requests
from persona._channel import ChannelOptions, TlsConfig
from persona._errors import PersonaError, from_rpc_error
from persona._graph import GraphRecord
from persona._retry import STREAM_RETRY, Attempts, Deadline, RetryPolicy
from persona._stream import StreamState
from persona._types import IngestItemLike, MemoryTypeLike, TimeRangeLike, TimestampLike
from persona.v1 import graph_pb2, memory_pb2, memory_service_pb2_grpc, profile_pb2
from persona.v1 import knowledge_pb2 as kpb
from persona.v1 import memory_service_pb2 as pb

__all__ = ["AsyncContextStream", "AsyncPersonaClient"]

_R = TypeVar("_R", bound=Message)


class AsyncPersonaClient:
    """Persona's asyncio client. Use it as an async context manager, or call `close()`.

    Every unary call gets a deadline (`default_timeout_s`, or the call's `timeout`) that also
    bounds its retries. UNAVAILABLE is retried with backoff for calls that are safe to repeat:
    reads, deletes, and Ingest when every item has a source id. Failures raise a subclass of
    `persona.PersonaError`. Methods return the `persona.v1` response messages. Context streams
    reconnect by themselves with `stream_retry` (`persona.STREAM_RETRY` by default).
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
        channel: grpc.aio.Channel | None = None,
        stream_retry: RetryPolicy | None = None,
    ) -> None:
        if (target is None) == (channel is None):
            raise TypeError("give either a target ('host:port') or a channel")
        self._target = target
        self._credentials = _channel.credentials(tls)
        self._options = _channel.options(channel_options)
        self._metadata = _channel.call_metadata(api_key)
        self._default_timeout_s = _channel.check_timeout("default_timeout_s", default_timeout_s)
        self._retry = retry or RetryPolicy()
        self._stream_retry = stream_retry or STREAM_RETRY
        self._owns_channel = channel is None
        self._closed = False
        self._channel: grpc.aio.Channel | None = channel
        self._stub: Any = (
            None if channel is None else memory_service_pb2_grpc.MemoryServiceStub(channel)
        )

    # A grpc.aio channel binds to the running event loop, so it is opened on first use (inside
    # the loop), not in __init__, which may run before the loop exists.
    def _get_stub(self) -> Any:
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._stub is None:
            assert self._target is not None
            if self._credentials is None:
                self._channel = grpc.aio.insecure_channel(self._target, options=self._options)
            else:
                self._channel = grpc.aio.secure_channel(
                    self._target, self._credentials, options=self._options
                )
            self._stub = memory_service_pb2_grpc.MemoryServiceStub(self._channel)
        return self._stub

    async def __aenter__(self) -> Self:
        self._get_stub()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the channel (a channel passed in by the caller stays open: the caller owns it)."""
        self._closed = True
        if self._owns_channel and self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None

    async def _unary(
        self,
        method: str,
        request: Message,
        response_type: type[_R],
        *,
        timeout: float | None,
        retry_safe: bool,
    ) -> _R:
        rpc = getattr(self._get_stub(), method)
        timeout = _channel.check_timeout("timeout", timeout)
        attempts = Attempts(
            self._retry,
            Deadline(self._default_timeout_s if timeout is None else timeout),
            retry_safe=retry_safe,
        )
        while True:
            try:
                response = await rpc(request, timeout=attempts.timeout(), metadata=self._metadata)
                return cast(_R, response)
            except grpc.RpcError as exc:
                await asyncio.sleep(attempts.failed(exc))

    async def ingest(
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
        return await self._unary(
            "Ingest",
            request,
            pb.IngestResponse,
            timeout=timeout,
            retry_safe=_requests.ingest_is_idempotent(request),
        )

    async def recall(
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
        return await self._unary(
            "Recall", request, pb.RecallResponse, timeout=timeout, retry_safe=True
        )

    async def ask_structured(
        self,
        user_id: str,
        question: str,
        schema: Mapping[str, Any] | str | bytes,
        *,
        max_memories: int = 0,
        timeout: float | None = None,
    ) -> pb.AskStructuredResponse:
        """Answer `question` as JSON valid against `schema` (a dict, or JSON text sent as is).
        `json.loads(response.answer_json)` gives the answer."""
        request = _requests.ask_structured(user_id, question, schema, max_memories=max_memories)
        return await self._unary(
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
    ) -> AsyncContextStream:
        """Subscribe to a user's context: `async for event in client.stream_context(...)`.

        The call starts on the first iteration and is cancelled when the consumer stops: by
        leaving the loop, `aclose()`, leaving `async with`, or cancelling the task. No deadline
        unless `timeout` is given (it then bounds the whole subscription).
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
        return AsyncContextStream(
            self,
            StreamState(request, self._stream_retry, _channel.check_timeout("timeout", timeout)),
        )

    async def get_memory(
        self, user_id: str, memory_id: str, *, timeout: float | None = None
    ) -> pb.GetMemoryResponse:
        request = _requests.get_memory(user_id, memory_id)
        return await self._unary(
            "GetMemory", request, pb.GetMemoryResponse, timeout=timeout, retry_safe=True
        )

    async def list_memories(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        page_token: str = "",
        types: Iterable[MemoryTypeLike] | MemoryTypeLike = (),
        include_invalidated: bool = False,
        timeout: float | None = None,
    ) -> pb.ListMemoriesResponse:
        """One page; pass `next_page_token` back as `page_token` (or use `iter_memories`)."""
        request = _requests.list_memories(
            user_id,
            page_size=page_size,
            page_token=page_token,
            types=types,
            include_invalidated=include_invalidated,
        )
        return await self._unary(
            "ListMemories", request, pb.ListMemoriesResponse, timeout=timeout, retry_safe=True
        )

    async def iter_memories(
        self,
        user_id: str,
        *,
        page_size: int = 0,
        types: Iterable[MemoryTypeLike] | MemoryTypeLike = (),
        include_invalidated: bool = False,
        timeout: float | None = None,
    ) -> AsyncIterator[memory_pb2.Memory]:
        """Every memory of the user, page after page (`timeout` applies to each page)."""
        type_list = [types] if isinstance(types, str | int) else list(types)
        page_token = ""
        while True:
            page = await self.list_memories(
                user_id,
                page_size=page_size,
                page_token=page_token,
                types=type_list,
                include_invalidated=include_invalidated,
                timeout=timeout,
            )
            for memory in page.memories:
                yield memory
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def delete_memory(
        self, user_id: str, memory_id: str, *, timeout: float | None = None
    ) -> pb.DeleteMemoryResponse:
        request = _requests.delete_memory(user_id, memory_id)
        # Deleting twice leaves the same state, so a retry is safe (the replay may answer
        # NOT_FOUND if the first attempt did delete).
        return await self._unary(
            "DeleteMemory", request, pb.DeleteMemoryResponse, timeout=timeout, retry_safe=True
        )

    async def delete_user(
        self, user_id: str, *, timeout: float | None = None
    ) -> pb.DeleteUserResponse:
        request = _requests.delete_user(user_id)
        return await self._unary(
            "DeleteUser", request, pb.DeleteUserResponse, timeout=timeout, retry_safe=True
        )

    # --- knowledge schemas ---

    async def put_knowledge_schema(
        self, name: str, schema: Mapping[str, Any] | str | bytes, *, timeout: float | None = None
    ) -> kpb.PutKnowledgeSchemaResponse:
        """Register (or replace) the tenant's knowledge schema `name`: a JSON Schema of an
        object (a dict, or JSON text sent as is). Putting the same schema again is a no-op."""
        request = kpb.PutKnowledgeSchemaRequest(name=name, json_schema=_convert.json_schema(schema))
        return await self._unary(
            "PutKnowledgeSchema",
            request,
            kpb.PutKnowledgeSchemaResponse,
            timeout=timeout,
            retry_safe=True,
        )

    async def list_knowledge_schemas(
        self, *, page_size: int = 0, page_token: str = "", timeout: float | None = None
    ) -> kpb.ListKnowledgeSchemasResponse:
        request = kpb.ListKnowledgeSchemasRequest(page_size=page_size, page_token=page_token)
        return await self._unary(
            "ListKnowledgeSchemas",
            request,
            kpb.ListKnowledgeSchemasResponse,
            timeout=timeout,
            retry_safe=True,
        )

    async def delete_knowledge_schema(
        self, name: str, *, timeout: float | None = None
    ) -> kpb.DeleteKnowledgeSchemaResponse:
        """Delete the schema and every user's document of it (NOT_FOUND if there is none:
        a retried call that had deleted it answers NOT_FOUND)."""
        return await self._unary(
            "DeleteKnowledgeSchema",
            kpb.DeleteKnowledgeSchemaRequest(name=name),
            kpb.DeleteKnowledgeSchemaResponse,
            timeout=timeout,
            retry_safe=True,
        )

    async def get_knowledge(
        self, user_id: str, name: str, *, timeout: float | None = None
    ) -> kpb.GetKnowledgeResponse:
        """The user's document of schema `name`: `json.loads(response.document_json)`, with
        each field's provenance and history in `response.fields`."""
        return await self._unary(
            "GetKnowledge",
            kpb.GetKnowledgeRequest(user_id=user_id, name=name),
            kpb.GetKnowledgeResponse,
            timeout=timeout,
            retry_safe=True,
        )

    async def get_profile(
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
        return await self._unary(
            "GetProfile",
            request,
            profile_pb2.GetProfileResponse,
            timeout=timeout,
            retry_safe=True,
        )

    async def export_graph(
        self, user_id: str, *, chunk_size: int = 0, timeout: float | None = None
    ) -> AsyncIterator[graph_pb2.ExportGraphResponse]:
        """The user's whole graph as chunks: every node (memory) first, then every edge, in a
        stable order. No deadline unless `timeout` is given (it bounds the whole export); not
        retried (an export that fails part way, e.g. ABORTED because the graph changed, is
        started again by the caller)."""
        request = _graph.export_request(user_id, chunk_size)
        call = self._get_stub().ExportGraph(
            request, timeout=_channel.check_timeout("timeout", timeout), metadata=self._metadata
        )
        try:
            async for chunk in call:
                yield cast(graph_pb2.ExportGraphResponse, chunk)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            call.cancel()

    async def import_graph(
        self,
        user_id: str,
        records: Iterable[GraphRecord],
        *,
        timeout: float | None = None,
    ) -> graph_pb2.ImportGraphResponse:
        """Import nodes (`persona.v1.Memory`) and edges (`GraphEdge`), nodes first, as
        `export_graph` gives them. Sent in chunks; validated whole by the server before it
        writes anything. Importing the same graph again changes nothing. No deadline unless
        `timeout` is given."""
        requests = _graph.import_requests(user_id, records)
        unbuildable: list[PersonaError] = []

        async def stream() -> AsyncIterator[graph_pb2.ImportGraphRequest]:
            try:
                for request in requests:
                    yield request
            except PersonaError as exc:
                # grpc.aio cancels the call when the request iterator raises: keep the reason.
                unbuildable.append(exc)
                raise

        try:
            response = await self._get_stub().ImportGraph(
                stream(),
                timeout=_channel.check_timeout("timeout", timeout),
                metadata=self._metadata,
            )
        except (grpc.RpcError, asyncio.CancelledError) as exc:
            if unbuildable:
                raise unbuildable[0] from None
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise from_rpc_error(exc) from exc
        return cast(graph_pb2.ImportGraphResponse, response)


class AsyncContextStream:
    """The events of one StreamContext subscription (`persona.v1.StreamContextResponse`).

    Reconnects by itself after UNAVAILABLE or a dropped connection, with backoff and the last
    resume token (see `resume_token`), so no event is lost or repeated. Events are passed on as
    they come, `resync` included: on a `resync` (or a `snapshot` after the first event, when
    the stream was away longer than the server keeps changes) replace what you hold. Cancels
    the call as soon as the consumer stops.
    """

    def __init__(self, client: AsyncPersonaClient, state: StreamState) -> None:
        self._client = client
        self._state = state
        self._call: Any = None

    @property
    def resume_token(self) -> str:
        """The token of the last event received: pass it to `stream_context` to resume later."""
        return self._state.resume_token

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> pb.StreamContextResponse:
        while True:
            if self._state.closed:
                raise StopAsyncIteration
            if self._call is None:
                self._call = self._client._get_stub().StreamContext(
                    self._state.next_request(),
                    timeout=self._state.timeout(),
                    metadata=self._client._metadata,
                )
            try:
                event = await self._call.read()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if self._state.closed and task is not None and task.cancelling() == 0:
                    # aclose() from another task cancelled the call under our read: that is
                    # the end of the stream for this consumer, not a task cancellation.
                    raise StopAsyncIteration from None
                self.cancel()
                raise
            except grpc.RpcError as exc:
                self._call = None
                if self._state.closed:
                    raise StopAsyncIteration from None
                await asyncio.sleep(self._state.failed(exc))
                continue
            if event is grpc.aio.EOF:
                self._call = None
                if self._state.closed:
                    raise StopAsyncIteration
                await asyncio.sleep(self._state.ended())
                continue
            self._state.received(event)
            return cast(pb.StreamContextResponse, event)

    def cancel(self) -> None:
        """Stop the subscription now; the server sees the call cancelled."""
        self._state.closed = True
        call, self._call = self._call, None
        if call is not None and not call.done():
            call.cancel()

    async def aclose(self) -> None:
        self.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()

    def __del__(self) -> None:
        # A consumer that `break`s out of `async for` never calls aclose(); dropping the last
        # reference must still end the server's work for this subscription.
        # During interpreter or loop shutdown there may be nothing to cancel.
        with contextlib.suppress(Exception):
            self.cancel()
