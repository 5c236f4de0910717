"""The sqlite index of the store: which chunks exist, which objects and keys use them.

Tables::

    chunks(digest, size, xxh3, root, touched)       one row per chunk file
    objects(digest, size, chunk_size, last_used)    complete objects only
    object_chunks(object, idx, chunk)               their ordered chunk lists
    partials(key, chunk_size, expected_*, last_used)  resumable objects still being written
    partial_chunks(key, idx, chunk)                 their chunks so far (a prefix)
    keys(key, digest, meta)                         key (URL, ``sha256:<hex>``) -> object
    pins(digest)                                    objects eviction must keep

A row is written only after the file it describes is durable, so a power cut leaves at worst
a file without a row, which :meth:`StoreCore.recover` adopts or deletes. The database runs in
WAL mode with ``synchronous=FULL``: a committed row survives a power cut.

Two connections: writes go through one under a lock (from worker threads, since a commit
fsyncs), reads through another so a lookup from the event loop never waits for a commit.

An index sqlite cannot open (corrupt, truncated, not a database) is set aside as
``index.sqlite.corrupt-<UTC time>`` with an error in the log, and a fresh one is made: the
store's recovery then re-adopts every chunk file on disk (hash checked). Manifests live only in
the index, so the objects' chunk lists and keys are what is lost: an object comes back on its
next fetch, whose chunks are already here. Never a crash loop on one bad file.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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


SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS info(name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks(
    digest BLOB PRIMARY KEY, size INTEGER NOT NULL, xxh3 BLOB NOT NULL, root BLOB,
    touched REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS objects(
    digest BLOB PRIMARY KEY, size INTEGER NOT NULL, chunk_size INTEGER NOT NULL,
    last_used REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS object_chunks(
    object BLOB NOT NULL, idx INTEGER NOT NULL, chunk BLOB NOT NULL, PRIMARY KEY(object, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS object_chunks_by_chunk ON object_chunks(chunk);
CREATE TABLE IF NOT EXISTS partials(
    key TEXT PRIMARY KEY, chunk_size INTEGER NOT NULL, expected_digest BLOB,
    expected_size INTEGER, last_used REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS partial_chunks(
    key TEXT NOT NULL, idx INTEGER NOT NULL, chunk BLOB NOT NULL, PRIMARY KEY(key, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS partial_chunks_by_chunk ON partial_chunks(chunk);
CREATE TABLE IF NOT EXISTS keys(key TEXT PRIMARY KEY, digest BLOB, meta TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS keys_by_digest ON keys(digest);
CREATE TABLE IF NOT EXISTS pins(digest BLOB PRIMARY KEY) WITHOUT ROWID;
"""


def translate(exc: sqlite3.Error, what: str) -> StoreError:
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return StoreFullError(f"no room to {what}: the store's disk is full ({exc})")
    return StoreError(f"store index failed to {what}: {exc}")


class Tx:
    """An open write transaction; ``after_commit`` callables run once it has committed,
    still under the write lock (file removals go there, so a failed commit keeps them)."""

    __slots__ = ("after_commit", "cur")

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur
        self.after_commit: list[Any] = []

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self.cur.execute(sql, params)

    def one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self.cur.execute(sql, params).fetchone()

    def all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self.cur.execute(sql, params).fetchall()


class Index:
    def __init__(self, path: Path) -> None:
        self.path = path
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
        self._w.executescript(_SCHEMA)
        row = self._w.execute("SELECT value FROM info WHERE name='schema'").fetchone()
        if row is None:
            self._w.execute(
                "INSERT INTO info(name, value) VALUES ('schema', ?)", (str(SCHEMA_VERSION),)
            )
        elif int(row[0]) != SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: index schema {row[0]} is not the supported {SCHEMA_VERSION}"
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
    def write(self, what: str) -> Iterator[Tx]:
        """One write transaction (BEGIN IMMEDIATE ... COMMIT) under the write lock."""
        with self.wlock:
            tx = Tx(self._w.cursor())
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
            for fn in tx.after_commit:
                fn()

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A consistent read snapshot on the read connection."""
        with self._rlock:
            tx = Tx(self._r.cursor())
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
