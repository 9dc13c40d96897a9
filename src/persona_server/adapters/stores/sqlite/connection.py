"""Connections and the threads that own them.

SQLite calls block, so none run on the event loop. Writes go through one connection owned by a
single-thread executor: that thread is the only writer, which serialises transactions without an
asyncio lock and keeps the vector cache updates in commit order. Reads run on a small pool whose
threads each open their own connection; WAL lets them read while the writer writes.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TypeVar

from persona_server.ports.graph_store import StoreFullError, StoreUnavailableError

T = TypeVar("T")
log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 30_000

# Primary result codes worth a retry: the database is busy or locked past busy_timeout, or the
# disk failed or filled. Anything else (constraint, misuse) is a bug and surfaces as it is.
_TRANSIENT_CODES = frozenset({5, 6, 10, 13, 14})  # BUSY, LOCKED, IOERR, FULL, CANTOPEN


_SQLITE_FULL = 13


def _unavailable(exc: sqlite3.Error) -> StoreUnavailableError | None:
    code = getattr(exc, "sqlite_errorcode", None)
    transient = code is not None and code & 0xFF in _TRANSIENT_CODES
    if not isinstance(exc, sqlite3.OperationalError) or not transient:
        return None
    if code is not None and code & 0xFF == _SQLITE_FULL:
        return StoreFullError(f"the SQLite store is full: {exc}")
    return StoreUnavailableError(f"SQLite store unavailable: {exc}")


def connect(path: Path, *, writer: bool) -> sqlite3.Connection:
    # isolation_level=None: the module must not open transactions behind our back; every
    # transaction below is an explicit BEGIN so its extent is visible in the code.
    conn = sqlite3.connect(
        path,
        timeout=BUSY_TIMEOUT_MS / 1000,
        isolation_level=None,
        check_same_thread=False,
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    conn.execute("PRAGMA temp_store = MEMORY")
    conn.execute("PRAGMA cache_size = -32768")
    if writer:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.close()
            raise StoreUnavailableError(f"cannot put {path} in WAL mode (got {mode!r})")
        # FULL syncs the WAL on every commit: an acknowledged write survives power loss, not
        # only a killed process.
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA secure_delete = ON")
    else:
        conn.execute("PRAGMA query_only = ON")
    return conn


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # IMMEDIATE takes the write lock up front, so a read-then-write never fails half way with
    # SQLITE_BUSY when another process holds the lock; busy_timeout makes it wait instead.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException:
        # Also after a failed COMMIT (I/O error, disk full): the next BEGIN must find the
        # connection idle.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


@contextmanager
def read_transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    # One snapshot for all statements of a read, so e.g. rows and their provenance agree.
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


class Database:
    """The writer connection, the reader pool, and async entry points to both."""

    def __init__(self, path: Path, *, readers: int = 2) -> None:
        self.path = path
        self._readers = readers
        self._writer: sqlite3.Connection | None = None
        self._write_pool: ThreadPoolExecutor | None = None
        self._read_pool: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    async def open(self, init: Callable[[sqlite3.Connection], T]) -> T:
        """Open the writer connection and run `init` on it (schema, meta checks) first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="persona-sqlite-write")
        loop = asyncio.get_running_loop()
        try:
            writer = await loop.run_in_executor(pool, partial(connect, self.path, writer=True))
        except BaseException:
            pool.shutdown(wait=True)
            raise
        try:
            result = await loop.run_in_executor(pool, init, writer)
        except BaseException:
            await loop.run_in_executor(pool, writer.close)
            pool.shutdown(wait=True)
            raise
        self._writer = writer
        self._write_pool = pool
        self._read_pool = ThreadPoolExecutor(
            max_workers=self._readers, thread_name_prefix="persona-sqlite-read"
        )
        return result

    async def close(self) -> None:
        write_pool, read_pool, writer = self._write_pool, self._read_pool, self._writer
        self._write_pool = self._read_pool = self._writer = None
        if read_pool is not None:
            await asyncio.to_thread(read_pool.shutdown, wait=True)
        if write_pool is not None and writer is not None:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(write_pool, self._close_writer, writer)
            await asyncio.to_thread(write_pool.shutdown, wait=True)
        # The reader threads have exited, so nothing else can be using their connections.
        with self._reader_lock:
            conns, self._reader_conns = self._reader_conns, []
        for conn in conns:
            conn.close()

    @staticmethod
    def _close_writer(conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA optimize")
        except sqlite3.Error as exc:
            # A full disk or a read-only file: closing must still close.
            log.warning("PRAGMA optimize failed at close", extra={"error": str(exc)})
        finally:
            conn.close()

    async def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        pool, conn = self._write_pool, self._writer
        if pool is None or conn is None:
            raise StoreUnavailableError("the SQLite store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, conn)
        except sqlite3.Error as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    async def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        pool = self._read_pool
        if pool is None:
            raise StoreUnavailableError("the SQLite store is not open")
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, self._run_read, fn)
        except sqlite3.Error as exc:
            unavailable = _unavailable(exc)
            if unavailable is None:
                raise
            raise unavailable from exc

    def _run_read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, writer=False)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return fn(conn)
