"""The sqlite plumbing under the store's index: two connections, transactions, and what to do
with a database file sqlite cannot open.

Writes go through one connection under a lock (from worker threads, since a commit fsyncs),
reads through another so a lookup from the event loop never waits for a commit. The database
runs in WAL mode with ``synchronous=FULL``: a committed row survives a power cut.

A file sqlite cannot open (corrupt, truncated, not a database) is set aside as
``<name>.corrupt-<UTC time>`` with an error in the log, and a fresh one is made. Never a crash
loop on one bad file. What the tables hold is :mod:`._index`'s business.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Generic, TypeVar

from frumitcache._log import get_logger
from frumitcache.errors import StoreError, StoreFullError

log = get_logger("store")
# SQLITE_CORRUPT, SQLITE_NOTADB: the file, not the machine, is at fault (a locked, read-only or
# missing database is not set aside).
_UNREADABLE = {11, 26}


def _is_corrupt(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _UNREADABLE
    return type(exc) is sqlite3.DatabaseError


def translate(exc: sqlite3.Error, what: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return StoreFullError(f"no room to {what}: the store's disk is full ({exc})")
    return StoreError(f"store index failed to {what}: {exc}")


class Transaction:
    """An open transaction; ``after_commit`` callables run once a write has committed, still
    under the write lock (file removals go there, so a failed commit keeps them)."""

    __slots__ = ("after_commit", "cur")

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur
        self.after_commit: list[Callable[[], None]] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.cur.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cur.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.cur.execute(sql, params).fetchall()


T = TypeVar("T", bound=Transaction)


class Database(Generic[T]):
    """A sqlite file opened with ``schema`` at ``version``; transactions are ``make_tx``'s."""

    def __init__(
        self, path: Path, schema: str, version: int, make_tx: Callable[[sqlite3.Cursor], T]
    ) -> None:
        self.path = path
        self._schema = schema
        self._version = version
        self._make_tx = make_tx
        try:
            self._open()
        except sqlite3.Error as exc:
            if not _is_corrupt(exc):
                raise translate(exc, f"open {path}") from None
            self._set_aside(exc)
            try:
                self._open()
            except sqlite3.Error as again:
                raise translate(again, f"open {path}") from None
        self.wlock = threading.RLock()
        self._rlock = threading.Lock()

    def _set_aside(self, exc: sqlite3.Error) -> None:
        for conn in (getattr(self, "_w", None), getattr(self, "_r", None)):
            if conn is not None:
                conn.close()
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in ("", "-wal", "-shm"):
            src = self.path.with_name(self.path.name + suffix)
            if src.exists():
                src.replace(aside.with_name(aside.name + suffix))
        log.error(
            "index.set-aside",
            path=str(self.path),
            aside=str(aside),
            detail=str(exc),
            action="a fresh index is made; chunk files on disk are re-adopted",
        )

    def _open(self) -> None:
        self._w = self._connect()
        self._w.execute("PRAGMA journal_mode=WAL")
        self._w.execute("PRAGMA synchronous=FULL")
        # Checkpoint often and cut the WAL back afterwards: every chunk is a commit, and
        # on a small SD card a WAL that only ever grows eats the room chunks need.
        self._w.execute("PRAGMA wal_autocheckpoint=256")
        self._w.execute("PRAGMA journal_size_limit=1048576")
        self._w.executescript(self._schema)
        row = self._w.execute("SELECT value FROM info WHERE name='schema'").fetchone()
        if row is None:
            self._w.execute(
                "INSERT INTO info(name, value) VALUES ('schema', ?)", (str(self._version),)
            )
        elif int(row[0]) != self._version:
            raise StoreError(
                f"{self.path}: index schema {row[0]} is not the supported {self._version}"
            )
        self._r = self._connect()
        self._r.execute("PRAGMA query_only=1")

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def close(self) -> None:
        with self.wlock, self._rlock:
            self._r.close()
            self._w.close()

    @contextmanager
    def write(self, what: str) -> Iterator[T]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT) under the write lock."""
        with self.wlock:
            tx = self._make_tx(self._w.cursor())
            try:
                tx.execute("BEGIN IMMEDIATE")
                try:
                    yield tx
                except BaseException:
                    self._w.rollback()
                    raise
                tx.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._w.in_transaction:
                    self._w.rollback()
                raise translate(exc, what) from None
            self.committed(tx)
            for fn in tx.after_commit:
                fn()

    def committed(self, tx: T) -> None:
        """Called once a write transaction committed, under the write lock, before its
        ``after_commit`` work (a subclass tracks what changed)."""

    @contextmanager
    def read(self) -> Iterator[T]:
        """A consistent read snapshot on the read connection."""
        with self._rlock:
            tx = self._make_tx(self._r.cursor())
            try:
                tx.execute("BEGIN")
                try:
                    yield tx
                finally:
                    tx.execute("COMMIT")
            except sqlite3.Error as exc:
                raise translate(exc, "read the index") from None

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        with self.read() as tx:
            return tx.one(sql, params)

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        with self.read() as tx:
            return tx.all(sql, params)
