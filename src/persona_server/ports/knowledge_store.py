"""The store's knowledge operations: tenant schemas and per-user documents (`KnowledgeOps`).

Schemas belong to a tenant, documents to a (tenant, user). A document records the cursor it
has read the user's episodes up to, and `put_documents` only writes where the stored cursor is
still the one the caller read (compare and set), so two replicas updating one user cannot both
apply an item: the loser's write changes nothing and it re-reads.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from persona_server.domain.knowledge import KnowledgeDocument, KnowledgeSchema
from persona_server.domain.models import UserRef


class KnowledgeOps(Protocol):
    async def put_schema(self, schema: KnowledgeSchema, max_schemas: int) -> tuple[bool, bool]:
        """Insert or replace by (tenant, name); a replacement keeps `created_at`. Returns
        (created, accepted): accepted is False (nothing written) when the name is new and the
        tenant already has `max_schemas`."""
        ...

    async def get_schema(self, tenant: str, name: str) -> KnowledgeSchema | None: ...

    async def list_schemas(self, tenant: str, *, after: str, limit: int) -> list[KnowledgeSchema]:
        """The tenant's schemas with name > `after`, in name order."""
        ...

    async def delete_schema(self, tenant: str, name: str) -> int | None:
        """Delete the schema and all its documents; the documents deleted, None if no schema."""
        ...

    async def documents(self, user: UserRef) -> dict[str, KnowledgeDocument]:
        """The user's documents by schema name (schemas without a document are absent)."""
        ...

    async def put_documents(
        self,
        user: UserRef,
        documents: Sequence[tuple[KnowledgeDocument, int]],
        *,
        requires: str = "",
    ) -> bool:
        """Write each (document, expected cursor) in one transaction, only if every stored
        cursor (0 for no document) still equals the expected one, the schema still exists and
        (when `requires` is set) the user still has that episode, so that an update computed
        from an episode deleted meanwhile (or from a deleted user) is never written; False
        (nothing written) otherwise."""
        ...

    async def episodes_after(self, user: UserRef, seq: int, limit: int) -> list[tuple[int, str]]:
        """(seq, id) of the user's episodes with seq > `seq`, in ingest order."""
        ...

    async def count_episodes_after(self, user: UserRef, seq: int) -> int:
        """How many of the user's episodes have seq > `seq` (an indexed count)."""
        ...

    async def latest_episode_seq(self, user: UserRef) -> int:
        """The user's highest episode seq (0 without episodes)."""
        ...

    async def behind(self, limit: int) -> list[UserRef]:
        """Users, across tenants, with at least one document of their tenant's schemas whose
        cursor is below their latest episode (no document counts as cursor 0), in random
        order (so that users in backoff cannot take every place in a round)."""
        ...
