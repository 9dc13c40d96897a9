"""One async driver per store, managed transactions, and the mapping of outages to the port.

- Writes and reads run as managed transactions (`execute_write` / `execute_read`): the driver
  re-runs the transaction function on errors it classifies as retryable (lost connection,
  leader switch, deadlock, ...) with its own backoff, up to `max_retry_time_s`. Transaction
  functions therefore compute everything from what they read, and never keep state across runs.
- Reads are routed to readers (`neo4j://` clusters, Aura) and writes to the leader; every
  session shares the driver's bookmark manager, so a read in this process sees this process's
  earlier writes even on a follower.
- What is still failing after the driver's retries and is about reachability
  (`ServiceUnavailable`, `SessionExpired`, pool exhaustion, any error the driver marks
  retryable) becomes `StoreUnavailableError`, which the transport answers with UNAVAILABLE and
  RetryInfo. Errors are told apart by class and `is_retryable()`, never by message text.
- Once a call has failed for lack of a server, later calls make one attempt instead of retrying
  for `max_retry_time_s`: during an outage an RPC fails in milliseconds rather than holding its
  deadline. The first call or ping that succeeds restores full retries.
- After an outage, until the store has verified its schema again (`schema_pending`), any
  server error is `StoreUnavailableError` too: a database that came back without its indexes
  fails statements that need them, which is the outage's tail, not a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, Concatenate, LiteralString, ParamSpec, TypeVar

from neo4j import (
    READ_ACCESS,
    WRITE_ACCESS,
    AsyncDriver,
    AsyncGraphDatabase,
    AsyncManagedTransaction,
    AsyncResult,
    AsyncSession,
    RoutingControl,
)
from neo4j.exceptions import (
    ConnectionPoolError,
    DriverError,
    Neo4jError,
    ServiceUnavailable,
    SessionExpired,
)

from persona_server.ports.graph_store import StoreUnavailableError

log = logging.getLogger(__name__)

# The only procedures the adapter calls are the full-text and vector index queries, so one of
# them failing means its index is missing or not online: a database that came back without its
# schema. The driver's own retries may have hidden the outage itself from us.
_INDEX_QUERY_FAILED = "Neo.ClientError.Procedure.ProcedureCallFailed"

T = TypeVar("T")
P = ParamSpec("P")
Work = Callable[Concatenate[AsyncManagedTransaction, P], Awaitable[T]]

DEFAULT_POOL_SIZE = 50
DEFAULT_CONNECTION_TIMEOUT_S = 5.0
DEFAULT_MAX_RETRY_TIME_S = 15.0
DEFAULT_PING_TIMEOUT_S = 1.0


def unavailable(exc: BaseException) -> StoreUnavailableError | None:
    """The port's error for a failure worth retrying later, or None for a real error.

    The message reaches clients (UNAVAILABLE), so it names the kind of failure only; addresses
    and server messages stay in the chained exception and the server log.
    """
    if isinstance(exc, ServiceUnavailable | SessionExpired | ConnectionPoolError):
        return StoreUnavailableError(f"Neo4j is unreachable ({type(exc).__name__})")
    if isinstance(exc, Neo4jError | DriverError) and exc.is_retryable():
        return StoreUnavailableError(f"Neo4j kept failing ({type(exc).__name__})")
    return None


def _is_outage(exc: BaseException) -> bool:
    return isinstance(exc, ServiceUnavailable | SessionExpired | ConnectionPoolError)


class Connection:
    """The driver and the session settings every operation uses."""

    def __init__(
        self,
        uri: str,
        auth: tuple[str, str] | None,
        database: str,
        *,
        max_pool_size: int = DEFAULT_POOL_SIZE,
        connection_timeout_s: float = DEFAULT_CONNECTION_TIMEOUT_S,
        max_retry_time_s: float = DEFAULT_MAX_RETRY_TIME_S,
        ping_timeout_s: float = DEFAULT_PING_TIMEOUT_S,
    ) -> None:
        self.uri = uri
        self.database = database
        self._auth = auth
        self._max_pool_size = max_pool_size
        self._connection_timeout_s = connection_timeout_s
        self._max_retry_time_s = max_retry_time_s
        self._ping_timeout_s = ping_timeout_s
        self._driver: AsyncDriver | None = None
        # False after a call failed because no server answered; see the module docstring.
        self.reachable = True
        # Listeners told about outages (the store re-checks its schema after one).
        self.on_outage: Callable[[], None] = lambda: None
        # True from an outage until the store has re-created its constraints and indexes: a
        # database that came back empty (restored, replaced) fails statements on a missing
        # index meanwhile, and those calls are to be retried, not reported as bugs.
        self.schema_pending = False

    @property
    def is_open(self) -> bool:
        return self._driver is not None

    def open(self) -> None:
        if self._driver is not None:
            raise RuntimeError("store is already open")
        self._driver = AsyncGraphDatabase.driver(
            self.uri,
            auth=self._auth,
            max_connection_pool_size=self._max_pool_size,
            connection_timeout=self._connection_timeout_s,
            # Waiting for a pooled connection longer than a transaction may retry only turns
            # overload into latency; fail and let the caller retry.
            connection_acquisition_timeout=self._connection_timeout_s + self._max_retry_time_s,
            max_transaction_retry_time=self._max_retry_time_s,
            user_agent="persona-server",
            # "Property key does not exist" and the like: expected while a database is young
            # (no fact has been invalidated yet), and noise in the log. Deprecations and
            # performance notices stay on.
            notifications_disabled_classifications=["UNRECOGNIZED"],
        )

    async def close(self) -> None:
        driver, self._driver = self._driver, None
        if driver is not None:
            await driver.close()

    def _session(self, *, retry: bool = True, access: str = WRITE_ACCESS) -> AsyncSession:
        driver = self._driver
        if driver is None:
            raise StoreUnavailableError("the Neo4j store is not open")
        retry_time = self._max_retry_time_s if retry and self.reachable else 0.0
        return driver.session(
            database=self.database,
            bookmark_manager=driver.execute_query_bookmark_manager,
            max_transaction_retry_time=retry_time,
            default_access_mode=access,
        )

    def _failed(self, exc: BaseException) -> StoreUnavailableError | None:
        mapped = unavailable(exc)
        if isinstance(exc, Neo4jError) and exc.code == _INDEX_QUERY_FAILED:
            self.on_outage()  # the store re-checks its schema at the next ping
        if mapped is None and self.schema_pending and isinstance(exc, Neo4jError):
            log.warning(
                "Neo4j statement failed while the schema is being restored",
                extra={"error": f"{type(exc).__name__}: {exc}"},
            )
            return StoreUnavailableError("Neo4j is back; its schema is still being restored")
        if mapped is None:
            return None
        detail = {"error": f"{type(exc).__name__}: {exc}"}
        if _is_outage(exc):
            if self.reachable:
                log.warning("Neo4j unreachable", extra=detail)
            self.reachable = False
            self.on_outage()
        else:
            log.warning("Neo4j transaction failed after the driver's retries", extra=detail)
        return mapped

    @contextlib.contextmanager
    def _outcome(self) -> Iterator[None]:
        """Map what failed to the port's error; a success marks Neo4j reachable again."""
        try:
            yield
        except (Neo4jError, DriverError) as exc:
            mapped = self._failed(exc)
            if mapped is None:
                raise
            raise mapped from exc
        self.reachable = True

    async def write(self, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._outcome():
            async with self._session() as session:
                return await session.execute_write(work, *args, **kwargs)

    async def read(self, work: Work[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        with self._outcome():
            async with self._session() as session:
                return await session.execute_read(work, *args, **kwargs)

    async def read_one(
        self, statement: LiteralString, params: Mapping[str, Any]
    ) -> list[dict[str, Any]]:
        """One read statement as its own managed transaction, every record as a dict.

        Through `execute_query`, which sends BEGIN together with the statement: one round trip
        fewer than a transaction function, with the same retries by the driver. During an
        outage the transaction-function path runs instead, which is the one whose retries
        `reachable` turns off (see the module docstring).
        """
        driver = self._driver
        if driver is None or not self.reachable:
            return await self.read(_statement_rows, statement, params)
        with self._outcome():
            return await driver.execute_query(
                statement,
                dict(params),
                routing_=RoutingControl.READ,
                database_=self.database,
                bookmark_manager_=driver.execute_query_bookmark_manager,
                result_transformer_=_result_rows,
            )

    async def schema(self, statement: LiteralString, params: Mapping[str, Any]) -> None:
        """Run one schema command (DDL cannot share a transaction with data writes)."""

        async def run(tx: AsyncManagedTransaction) -> None:
            await (await tx.run(statement, dict(params))).consume()

        await self.write(run)

    async def ping(self) -> bool:
        """One round trip, bounded by the ping timeout, never retried."""
        if self._driver is None:
            return False
        try:
            async with asyncio.timeout(self._ping_timeout_s):
                # Any cluster member will do: a leader election must not take every replica
                # out of the load balancer while reads still work.
                async with self._session(retry=False, access=READ_ACCESS) as session:
                    result = await session.run("RETURN 1 AS ok")
                    record = await result.single(strict=True)
        except (TimeoutError, Neo4jError, DriverError, OSError) as exc:
            if self.reachable:
                log.warning("Neo4j ping failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            self.reachable = False
            self.on_outage()
            return False
        self.reachable = True
        return bool(record["ok"] == 1)


async def rows(
    tx: AsyncManagedTransaction, query: LiteralString, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Run one statement in the transaction and return every record as a dict."""
    return await _result_rows(await tx.run(query, dict(params)))


async def _result_rows(result: AsyncResult) -> list[dict[str, Any]]:
    # Not `Result.data()`: its export walks every sequence, turning a vector's bytes into a
    # list of ints (about a millisecond per 384-d vector).
    return [dict(zip(record.keys(), record.values(), strict=True)) async for record in result]


async def _statement_rows(
    tx: AsyncManagedTransaction, statement: LiteralString, params: Mapping[str, Any]
) -> list[dict[str, Any]]:
    return await rows(tx, statement, params)


async def run(tx: AsyncManagedTransaction, query: LiteralString, params: Mapping[str, Any]) -> None:
    await (await tx.run(query, dict(params))).consume()
