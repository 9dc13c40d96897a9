"""The gRPC servicer: thin. Validate (proto -> command), call a service, convert back.

Every handler goes through `_unary` / the stream wrapper so that any exception becomes a status
with rich details in exactly one place (`errors.to_status`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeAlias, TypeVar

import grpc

from persona.v1 import graph_pb2 as gpb
from persona.v1 import knowledge_pb2 as kpb
from persona.v1 import memory_service_pb2 as svc
from persona.v1 import memory_service_pb2_grpc as svc_grpc
from persona.v1 import profile_pb2 as ppb
from persona_server.domain.models import UserRef
from persona_server.services.ask import AskService
from persona_server.services.context_feed import ContextFeed
from persona_server.services.decay_time import DecayTime
from persona_server.services.graph_export import GraphExportService
from persona_server.services.graph_import import GraphImportService, ImportChunk
from persona_server.services.ingest import IngestService, utcnow
from persona_server.services.knowledge import KnowledgeService
from persona_server.services.memories import MemoryService
from persona_server.services.recall import RecallService
from persona_server.services.results import StreamEvent
from persona_server.services.user_profile import UserProfileService
from persona_server.transport import (
    convert,
    graph_convert,
    graph_validation,
    knowledge_convert,
    knowledge_validation,
    profile_rpc,
    validation,
)
from persona_server.transport.auth import current_tenant
from persona_server.transport.errors import abort

log = logging.getLogger(__name__)
Resp = TypeVar("Resp")
Context: TypeAlias = grpc.aio.ServicerContext[Any, Any]


@dataclass(frozen=True)
class Services:
    ingest: IngestService
    recall: RecallService
    memories: MemoryService
    feed: ContextFeed
    ask: AskService
    graph_export: GraphExportService
    graph_import: GraphImportService
    knowledge: KnowledgeService
    profile: UserProfileService
    decay_time: DecayTime
    clock: Callable[[], datetime] = utcnow


async def _unary(context: Context, call: Callable[[], Awaitable[Resp]]) -> Resp:
    try:
        return await call()
    except grpc.aio.AbortError:
        raise
    except Exception as exc:  # every other failure is mapped, never leaked
        await abort(context, exc)
        raise  # unreachable: abort raises


class MemoryServicer(svc_grpc.MemoryServiceServicer):
    def __init__(self, services: Services) -> None:
        self._s = services
        # Keyed by identity (stream events compare by identity) and gone with the event.
        self._converted: weakref.WeakKeyDictionary[StreamEvent, bytes] = weakref.WeakKeyDictionary()

    async def Ingest(self, request: svc.IngestRequest, context: Context) -> svc.IngestResponse:
        async def call() -> svc.IngestResponse:
            cmd = validation.ingest(current_tenant(), request, self._s.clock())
            return convert.ingest_response(await self._s.ingest.ingest(cmd))

        return await _unary(context, call)

    async def Recall(self, request: svc.RecallRequest, context: Context) -> svc.RecallResponse:
        async def call() -> svc.RecallResponse:
            query = validation.recall(current_tenant(), request)
            outcome = await self._s.recall.recall(query)
            at = outcome.strength_at
            decay = self._s.decay_time.decay
            strength = None if at is None else (lambda memory: decay.strength(memory, at))
            return convert.recall_response(outcome, query.user.user_id, strength)

        return await _unary(context, call)

    async def AskStructured(
        self, request: svc.AskStructuredRequest, context: Context
    ) -> svc.AskStructuredResponse:
        async def call() -> svc.AskStructuredResponse:
            query = validation.ask(current_tenant(), request)
            answer = await self._s.ask.ask(query)
            return svc.AskStructuredResponse(
                answer_json=json.dumps(answer.answer, ensure_ascii=False),
                answered=answer.answered,
                citations=[
                    svc.Citation(
                        memory_id=m.id,
                        type=convert.memory(m, query.user.user_id).type,
                        source_ids=m.source_ids,
                    )
                    for m in answer.citations
                ],
            )

        return await _unary(context, call)

    async def StreamContext(  # type: ignore[override]
        self, request: svc.StreamContextRequest, context: Context
    ) -> AsyncIterator[bytes]:
        """Yields each event already serialized (`StreamContextResponse` bytes): registered
        with a pass-through response serializer (`registration.py`)."""
        try:
            query = validation.stream(current_tenant(), request)
            events = self._s.feed.stream(query)
            try:
                async for event in events:
                    yield self._wire(event, query.user)
            finally:
                # Runs on client cancellation too (the handler task is cancelled): no task or
                # wake-up registration outlives the call.
                await events.aclose()  # type: ignore[attr-defined]
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc)

    def _wire(self, event: StreamEvent, user: UserRef) -> bytes:
        # The feed offers one update object to every stream of a context: converted and
        # serialized once, not once per stream (grpc would call SerializeToString per send).
        wire = self._converted.get(event)
        if wire is None:
            # No strength on stream events: it moves with the clock alone, and a stream's
            # memories are compared across events (an unchanged memory must look unchanged).
            message = convert.stream_event(event, user)
            wire = self._converted[event] = message.SerializeToString()
        return wire

    async def GetMemory(
        self, request: svc.GetMemoryRequest, context: Context
    ) -> svc.GetMemoryResponse:
        async def call() -> svc.GetMemoryResponse:
            user, memory_id = validation.memory_ref(
                current_tenant(), request.user_id, request.memory_id
            )
            memory, strength = await asyncio.gather(
                self._s.memories.get(user, memory_id), self._s.decay_time.strength_of(user, None)
            )
            return svc.GetMemoryResponse(memory=convert.memory(memory, user.user_id, strength))

        return await _unary(context, call)

    async def ListMemories(
        self, request: svc.ListMemoriesRequest, context: Context
    ) -> svc.ListMemoriesResponse:
        async def call() -> svc.ListMemoriesResponse:
            query = validation.list_memories(current_tenant(), request)
            page, strength = await asyncio.gather(
                self._s.memories.list_page(query),
                self._s.decay_time.strength_of(query.user, None),
            )
            return svc.ListMemoriesResponse(
                memories=[convert.memory(m, query.user.user_id, strength) for m in page.memories],
                next_page_token=page.next_cursor,
            )

        return await _unary(context, call)

    async def DeleteMemory(
        self, request: svc.DeleteMemoryRequest, context: Context
    ) -> svc.DeleteMemoryResponse:
        async def call() -> svc.DeleteMemoryResponse:
            user, memory_id = validation.memory_ref(
                current_tenant(), request.user_id, request.memory_id
            )
            deleted = await self._s.memories.delete(user, memory_id)
            return svc.DeleteMemoryResponse(deleted_ids=deleted)

        return await _unary(context, call)

    async def DeleteUser(
        self, request: svc.DeleteUserRequest, context: Context
    ) -> svc.DeleteUserResponse:
        async def call() -> svc.DeleteUserResponse:
            user = validation.delete_user(current_tenant(), request)
            return svc.DeleteUserResponse(deleted_memories=await self._s.memories.delete_user(user))

        return await _unary(context, call)

    async def ExportGraph(
        self, request: gpb.ExportGraphRequest, context: Context
    ) -> AsyncIterator[gpb.ExportGraphResponse]:
        try:
            user, chunk_size = graph_validation.export_request(current_tenant(), request)
            pages = self._s.graph_export.export(user)
            try:
                size = chunk_size or graph_convert.DEFAULT_CHUNK_RECORDS
                async for chunk in graph_convert.chunks(pages, user.user_id, size):
                    yield chunk
            finally:
                await pages.aclose()  # type: ignore[attr-defined]
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await abort(context, exc)

    async def ImportGraph(
        self, request_iterator: AsyncIterator[gpb.ImportGraphRequest], context: Context
    ) -> gpb.ImportGraphResponse:
        async def call() -> gpb.ImportGraphResponse:
            stream = graph_validation.ImportStream(current_tenant())

            async def chunks() -> AsyncIterator[ImportChunk]:
                async for request in request_iterator:
                    yield stream.chunk(request)

            report = await self._s.graph_import.import_graph(chunks())
            return gpb.ImportGraphResponse(
                nodes_created=report.nodes_created,
                nodes_unchanged=report.nodes_unchanged,
                edges=report.edges,
            )

        return await _unary(context, call)

    # --- knowledge schemas (knowledge.proto) ---

    async def PutKnowledgeSchema(
        self, request: kpb.PutKnowledgeSchemaRequest, context: Context
    ) -> kpb.PutKnowledgeSchemaResponse:
        async def call() -> kpb.PutKnowledgeSchemaResponse:
            cmd = knowledge_validation.put_schema(current_tenant(), request)
            stored, created = await self._s.knowledge.put_schema(cmd)
            return kpb.PutKnowledgeSchemaResponse(
                knowledge_schema=knowledge_convert.schema(stored), created=created
            )

        return await _unary(context, call)

    async def ListKnowledgeSchemas(
        self, request: kpb.ListKnowledgeSchemasRequest, context: Context
    ) -> kpb.ListKnowledgeSchemasResponse:
        async def call() -> kpb.ListKnowledgeSchemasResponse:
            after, limit = knowledge_validation.list_schemas(request)
            page, next_token = await self._s.knowledge.list_schemas(
                current_tenant(), after=after, limit=limit
            )
            return kpb.ListKnowledgeSchemasResponse(
                knowledge_schemas=[knowledge_convert.schema(s) for s in page],
                next_page_token=next_token,
            )

        return await _unary(context, call)

    async def DeleteKnowledgeSchema(
        self, request: kpb.DeleteKnowledgeSchemaRequest, context: Context
    ) -> kpb.DeleteKnowledgeSchemaResponse:
        async def call() -> kpb.DeleteKnowledgeSchemaResponse:
            name = knowledge_validation.schema_name(request)
            deleted = await self._s.knowledge.delete_schema(current_tenant(), name)
            return kpb.DeleteKnowledgeSchemaResponse(deleted_documents=deleted)

        return await _unary(context, call)

    async def GetKnowledge(
        self, request: kpb.GetKnowledgeRequest, context: Context
    ) -> kpb.GetKnowledgeResponse:
        async def call() -> kpb.GetKnowledgeResponse:
            user, name = knowledge_validation.get_knowledge(current_tenant(), request)
            return knowledge_convert.knowledge(await self._s.knowledge.get(user, name))

        return await _unary(context, call)

    async def GetProfile(
        self, request: ppb.GetProfileRequest, context: Context
    ) -> ppb.GetProfileResponse:
        async def call() -> ppb.GetProfileResponse:
            query = profile_rpc.request(current_tenant(), request)
            profile = await self._s.profile.get(query)
            return profile_rpc.response(profile, query.user.user_id)

        return await _unary(context, call)
