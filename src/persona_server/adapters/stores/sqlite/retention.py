"""Retention: a tenant's episodes past their event-time cutoff, deleted in bounded batches.

One batch is one write transaction over at most `limit` episodes, so other writers wait for a
short one at a time and memory stays bounded whatever the tenant's size. The cascade is the one
`MemoryOps.delete` uses (cascade.py), applied to a whole user's share of the batch at once. The
NEXT chain needs no repair here: it is the order of an index (schema.py).
"""

from __future__ import annotations

import logging
import sqlite3
from collections import defaultdict
from datetime import UTC, datetime

from persona_server.adapters.stores.sqlite.cascade import delete_rows, detach_episodes
from persona_server.adapters.stores.sqlite.changes import ChangeLog
from persona_server.adapters.stores.sqlite.connection import write_transaction
from persona_server.adapters.stores.sqlite.context import StoreContext
from persona_server.adapters.stores.sqlite.users import cache_key, checkpoint_truncate
from persona_server.adapters.stores.values import to_us
from persona_server.adapters.stores.vector_matrix import Change
from persona_server.domain.models import UserRef
from persona_server.ports.graph_store import ExpiredEpisodes

log = logging.getLogger(__name__)

# The tenant's users in (tenant, user_id) index order, each user's expired episodes along the
# (user_key, chain_at, seq) chain index from its start. The ORDER BY is the order of that nested
# loop, so SQLite streams it and stops at the limit: ordering by anything else would make it
# collect and sort every expired episode of the tenant for each batch.
_EXPIRED = (
    "SELECT u.key, u.user_id, m.rowid FROM users u "
    "JOIN memories m ON m.user_key = u.key AND m.type = 'episode' AND m.chain_at < ? "
    "WHERE u.tenant = ? ORDER BY u.user_id, m.chain_at, m.seq LIMIT ?"
)


async def expire(
    ctx: StoreContext, tenant: str, before: datetime, limit: int
) -> list[ExpiredEpisodes]:
    if limit <= 0:
        raise ValueError("limit must be positive")

    def run(conn: sqlite3.Connection) -> list[ExpiredEpisodes]:
        now = datetime.now(UTC)
        out: list[ExpiredEpisodes] = []
        removals: dict[UserRef, list[str]] = {}
        with write_transaction(conn):
            per_user: dict[tuple[int, str], list[int]] = defaultdict(list)
            for key, user_id, rowid in conn.execute(_EXPIRED, (to_us(before), tenant, limit)):
                per_user[(key, user_id)].append(rowid)
            for (key, user_id), rowids in per_user.items():
                user = UserRef(tenant=tenant, user_id=user_id)
                changes = ChangeLog(conn, key, now, ctx.change_log_max_entries)
                # Detach first: the FK cascade would drop the provenance rows that tell which
                # memories were derived only from these episodes.
                detached = detach_episodes(conn, key, rowids, changes)
                gone = delete_rows(conn, key, rowids, changes)
                changes.flush()
                removals[user] = gone + detached.deleted
                out.append(
                    ExpiredEpisodes(user, len(gone), len(detached.deleted), len(detached.kept))
                )
            if per_user and not ctx.fts_secure_delete:
                # As for a deleted user (users.py): without secure-delete the terms stay in
                # older index segments until merged. Once per batch, not per episode.
                conn.execute("INSERT INTO memories_fts (memories_fts) VALUES ('optimize')")
        for user, gone in removals.items():
            ctx.cache.apply(cache_key(user), Change(removals=gone))
        if per_user and not checkpoint_truncate(conn):
            log.warning(
                "episodes expired, but the WAL could not be truncated yet (readers busy); "
                "its pages are overwritten by later checkpoints"
            )
        return out

    return await ctx.db.write(run)
