"""Lifecycle of memories: get, list, delete one, delete a user.

Every deletion is written to the audit log (`persona.audit`, INFO): who (tenant), whose
(user id), what (ids, counts), never the memory's text.
"""

from __future__ import annotations

import logging

from persona_server.domain.errors import NotFoundError
from persona_server.domain.models import Memory, UserRef
from persona_server.ports.graph_store import GraphStore, Page
from persona_server.services.commands import ListQuery
from persona_server.services.knowledge import forget_memories
from persona_server.services.notifier import ChangeNotifier

audit = logging.getLogger("persona.audit")


class MemoryService:
    def __init__(self, store: GraphStore, notifier: ChangeNotifier) -> None:
        self._store = store
        self._notifier = notifier

    async def get(self, user: UserRef, memory_id: str) -> Memory:
        found = await self._store.memories.get_many(user, [memory_id])
        if memory_id not in found:
            raise NotFoundError(
                f"user {user.user_id!r} has no memory {memory_id!r}", reason="MEMORY_NOT_FOUND"
            )
        return found[memory_id]

    async def list_page(self, q: ListQuery) -> Page:
        return await self._store.memories.list_page(
            q.user, filter=q.filter, limit=q.page_size, cursor=q.cursor
        )

    async def delete(self, user: UserRef, memory_id: str) -> list[str]:
        deleted = await self._store.memories.delete(user, memory_id)
        if not deleted:
            raise NotFoundError(
                f"user {user.user_id!r} has no memory {memory_id!r}", reason="MEMORY_NOT_FOUND"
            )
        # What the knowledge documents took from the deleted memories goes too.
        await forget_memories(self._store, user, deleted)
        self._notifier.notify(user)
        audit.info(
            "memory deleted",
            extra={
                "audit": "memory_deleted",
                "tenant": user.tenant,
                "user_id": user.user_id,
                "memory_id": memory_id,
                "deleted": len(deleted),
            },
        )
        return deleted

    async def delete_user(self, user: UserRef) -> int:
        count = await self._store.users.delete(user)
        self._notifier.notify(user)
        audit.info(
            "user deleted",
            extra={
                "audit": "user_deleted",
                "tenant": user.tenant,
                "user_id": user.user_id,
                "deleted": count,
            },
        )
        return count
