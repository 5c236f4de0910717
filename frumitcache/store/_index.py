"""The sqlite index of the store: its schema and every statement the store runs on it.

Tables::

    chunks(digest, size, xxh3, root, touched)       one row per chunk file
    objects(digest, size, chunk_size, last_used)    complete objects only
    object_chunks(object, idx, chunk)               their ordered chunk lists
    partials(key, chunk_size, expected_*, last_used)  resumable objects still being written
    partial_chunks(key, idx, chunk)                 their chunks so far (a prefix)
    keys(key, digest, meta)                         key (URL, ``sha256:<hex>``) -> object
    pins(digest)                                    objects eviction must keep

A row is written only after the file it describes is durable, so a power cut leaves at worst
a file without a row, which the store's recovery (``_recovery.py``) adopts or deletes.

An index sqlite cannot open is set aside and a fresh one made (``_sqlite.py``): the store's
recovery then re-adopts every chunk file on disk (hash checked). Manifests live only in the
index, so the objects' chunk lists and keys are what is lost: an object comes back on its next
fetch, whose chunks are already here.

Nothing outside this module writes SQL (tests aside): the store's jobs call :class:`Tx`'s
named statements. Digests are raw 32-byte values throughout.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path

from frumitcache.store._manifest import Manifest, PartialSpec
from frumitcache.store._sqlite import Database, Transaction

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


def _marks(n: int) -> str:
    return ",".join("?" * n)


class Tx(Transaction):
    """A transaction on the index with the store's statements, grouped by table.

    The iterators walk the transaction's cursor lazily (``for ... yield``, never
    ``yield from``, which would close the cursor when a caller stops early). Statements that
    change what a key names, its metadata, which objects exist or which chunks do set
    ``reshaped``: committing such a transaction moves :attr:`Index.generation`, which drops
    the store's remembered reads (``_memo.py``).
    """

    __slots__ = ("reshaped",)

    def __init__(self, cur: sqlite3.Cursor) -> None:
        super().__init__(cur)
        self.reshaped = False

    # --- chunks ----------------------------------------------------------------------------

    def chunk_sizes(self) -> dict[bytes, int]:
        return dict(self.all("SELECT digest, size FROM chunks"))

    def chunk_size(self, digest: bytes) -> int | None:
        row = self.one("SELECT size FROM chunks WHERE digest = ?", (digest,))
        return None if row is None else int(row[0])

    def has_chunk(self, digest: bytes) -> bool:
        return self.one("SELECT 1 FROM chunks WHERE digest = ?", (digest,)) is not None

    def chunk_check(self, digest: bytes) -> tuple[int, bytes] | None:
        """The chunk's size and xxh3, what a read is checked against."""
        row = self.one("SELECT size, xxh3 FROM chunks WHERE digest = ?", (digest,))
        return None if row is None else (int(row[0]), row[1])

    def chunk_checks(self) -> list[tuple[bytes, int, bytes]]:
        """Every chunk's digest, size and xxh3 (what a scrub walks)."""
        return [(r[0], r[1], r[2]) for r in self.all("SELECT digest, size, xxh3 FROM chunks")]

    def add_chunk(self, digest: bytes, size: int, xx: bytes, now: float) -> bool:
        """Record a chunk unless it is recorded already; True when the row is new."""
        return bool(
            self.execute(
                "INSERT OR IGNORE INTO chunks(digest, size, xxh3, touched) VALUES (?, ?, ?, ?)",
                (digest, size, xx, now),
            ).rowcount
        )

    def touch_chunk(self, digest: bytes, now: float) -> None:
        self.execute("UPDATE chunks SET touched = ? WHERE digest = ?", (now, digest))

    def set_chunk_xxh3(self, digest: bytes, xx: bytes) -> None:
        self.execute("UPDATE chunks SET xxh3 = ? WHERE digest = ?", (xx, digest))

    def set_chunk_root(self, digest: bytes, root: bytes) -> bool:
        """True when the chunk exists (and now carries ``root``)."""
        return bool(
            self.execute("UPDATE chunks SET root = ? WHERE digest = ?", (root, digest)).rowcount
        )

    def chunk_root(self, digest: bytes) -> bytes | None:
        row = self.one("SELECT root FROM chunks WHERE digest = ?", (digest,))
        return None if row is None else row[0]

    def delete_chunk(self, digest: bytes) -> None:
        self.reshaped = True
        self.execute("DELETE FROM chunks WHERE digest = ?", (digest,))

    def used_bytes(self) -> int:
        return int(self.one("SELECT COALESCE(SUM(size), 0) FROM chunks")[0])

    def chunk_is_referenced(self, digest: bytes) -> bool:
        """Whether a complete or partial object uses the chunk."""
        return bool(
            self.one("SELECT 1 FROM object_chunks WHERE chunk = ? LIMIT 1", (digest,))
            or self.one("SELECT 1 FROM partial_chunks WHERE chunk = ? LIMIT 1", (digest,))
        )

    def lost_chunks(self) -> set[bytes]:
        """Chunks objects or partials refer to that have no row (an interrupted old version)."""
        return {
            c
            for (c,) in self.all(
                "SELECT DISTINCT chunk FROM object_chunks oc WHERE NOT EXISTS "
                "(SELECT 1 FROM chunks WHERE digest = oc.chunk) UNION "
                "SELECT DISTINCT chunk FROM partial_chunks pc WHERE NOT EXISTS "
                "(SELECT 1 FROM chunks WHERE digest = pc.chunk)"
            )
        }

    def loose_chunks(self) -> Iterator[bytes]:
        """Chunks no object or partial uses, least recently touched first."""
        for (digest,) in self.cur.execute(
            "SELECT digest FROM chunks c WHERE "
            "NOT EXISTS (SELECT 1 FROM object_chunks WHERE chunk = c.digest) AND "
            "NOT EXISTS (SELECT 1 FROM partial_chunks WHERE chunk = c.digest) "
            "ORDER BY touched"
        ):
            yield digest

    # --- objects ---------------------------------------------------------------------------

    def has_object(self, digest: bytes) -> bool:
        return self.one("SELECT 1 FROM objects WHERE digest = ?", (digest,)) is not None

    def object_sizes(self, digest: bytes) -> tuple[int, int] | None:
        """The object's size and chunk size."""
        row = self.one("SELECT size, chunk_size FROM objects WHERE digest = ?", (digest,))
        return None if row is None else (int(row[0]), int(row[1]))

    def object_chunks(self, digest: bytes) -> list[bytes]:
        return [
            c
            for (c,) in self.all(
                "SELECT chunk FROM object_chunks WHERE object = ? ORDER BY idx", (digest,)
            )
        ]

    def manifest(self, digest: bytes) -> Manifest | None:
        sizes = self.object_sizes(digest)
        if sizes is None:
            return None
        return Manifest(digest, sizes[0], sizes[1], tuple(self.object_chunks(digest)))

    def add_object(self, manifest: Manifest, now: float) -> None:
        """Record a complete object, or mark it used when it is recorded already."""
        self.reshaped = True
        if self.has_object(manifest.digest):
            self.execute(
                "UPDATE objects SET last_used = ? WHERE digest = ?", (now, manifest.digest)
            )
            return
        self.execute(
            "INSERT INTO objects(digest, size, chunk_size, last_used) VALUES (?, ?, ?, ?)",
            (manifest.digest, manifest.size, manifest.chunk_size, now),
        )
        self.cur.executemany(
            "INSERT INTO object_chunks(object, idx, chunk) VALUES (?, ?, ?)",
            [(manifest.digest, i, c) for i, c in enumerate(manifest.chunks)],
        )

    def delete_object(self, digest: bytes) -> bool:
        """Forget a complete object and its chunk list (the chunks stay); True if it was."""
        self.reshaped = True
        self.execute("DELETE FROM object_chunks WHERE object = ?", (digest,))
        return bool(self.execute("DELETE FROM objects WHERE digest = ?", (digest,)).rowcount)

    def touch_objects(self, used: Iterable[tuple[bytes, float]]) -> None:
        self.cur.executemany(
            "UPDATE objects SET last_used = MAX(last_used, ?) WHERE digest = ?",
            [(t, d) for d, t in used],
        )

    def objects_using(self, chunks: set[bytes]) -> list[bytes]:
        return [
            o
            for (o,) in self.all(
                f"SELECT DISTINCT object FROM object_chunks WHERE chunk IN ({_marks(len(chunks))})",  # noqa: S608
                list(chunks),
            )
        ]

    def objects_by_use(self, *, newest_first: bool = False) -> list[tuple[bytes, float]]:
        """Every complete object's digest and last use."""
        order = "DESC" if newest_first else "ASC"
        return self.all(
            f"SELECT digest, last_used FROM objects ORDER BY last_used {order}"  # noqa: S608
        )

    def unpinned_by_use(self) -> Iterator[tuple[bytes, float]]:
        """Unpinned complete objects, least recently used first (eviction's order)."""
        for row in self.cur.execute(  # noqa: UP028 - yield from closes the cursor early
            "SELECT digest, last_used FROM objects "
            "WHERE digest NOT IN (SELECT digest FROM pins) ORDER BY last_used"
        ):
            yield row

    # --- keys ------------------------------------------------------------------------------

    def key_digest(self, key: str) -> bytes | None:
        row = self.one("SELECT digest FROM keys WHERE key = ?", (key,))
        return None if row is None else row[0]

    def map_key(self, key: str, digest: bytes) -> None:
        self.reshaped = True
        self.execute(
            "INSERT INTO keys(key, digest, meta) VALUES (?, ?, '{}') "
            "ON CONFLICT(key) DO UPDATE SET digest = excluded.digest",
            (key, digest),
        )

    def key_meta(self, key: str) -> str | None:
        """The key's metadata as stored (JSON text)."""
        row = self.one("SELECT meta FROM keys WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    def set_key_meta(self, key: str, meta: str) -> None:
        self.reshaped = True
        self.execute(
            "INSERT INTO keys(key, digest, meta) VALUES (?, NULL, ?) "
            "ON CONFLICT(key) DO UPDATE SET meta = excluded.meta",
            (key, meta),
        )

    def keys_of(self, digest: bytes) -> list[str]:
        return [
            k for (k,) in self.all("SELECT key FROM keys WHERE digest = ? ORDER BY key", (digest,))
        ]

    def mapped_keys(self) -> list[tuple[str, bytes]]:
        return self.all("SELECT key, digest FROM keys WHERE digest IS NOT NULL")

    def unmap_object(self, digest: bytes) -> None:
        """Keys naming the object name nothing (their metadata stays)."""
        self.reshaped = True
        self.execute("UPDATE keys SET digest = NULL WHERE digest = ?", (digest,))

    def delete_keys_of(self, digest: bytes) -> None:
        self.reshaped = True
        self.execute("DELETE FROM keys WHERE digest = ?", (digest,))

    # --- partial objects -------------------------------------------------------------------

    def partial_spec(self, key: str) -> PartialSpec | None:
        row = self.one(
            "SELECT chunk_size, expected_digest, expected_size FROM partials WHERE key = ?",
            (key,),
        )
        return None if row is None else PartialSpec(key, row[0], row[1], row[2])

    def has_partial(self, key: str) -> bool:
        return self.one("SELECT 1 FROM partials WHERE key = ?", (key,)) is not None

    def partial_rows(self, key: str) -> list[tuple[int, bytes, int | None]]:
        """The partial's chunk rows in order: index, chunk, and the chunk's size (None when
        its row is gone)."""
        return self.all(
            "SELECT pc.idx, pc.chunk, c.size FROM partial_chunks pc "
            "LEFT JOIN chunks c ON c.digest = pc.chunk WHERE pc.key = ? ORDER BY pc.idx",
            (key,),
        )

    def ref_partial(self, spec: PartialSpec, idx: int, digest: bytes, now: float) -> None:
        """Make ``digest`` chunk ``idx`` of the partial ``spec`` (creating it)."""
        self.execute(
            "INSERT INTO partials(key, chunk_size, expected_digest, expected_size, last_used) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET last_used = excluded.last_used, "
            "expected_digest = excluded.expected_digest, expected_size = excluded.expected_size",
            (spec.key, spec.chunk_size, spec.expected_digest, spec.expected_size, now),
        )
        self.execute(
            "INSERT OR REPLACE INTO partial_chunks(key, idx, chunk) VALUES (?, ?, ?)",
            (spec.key, idx, digest),
        )

    def cut_partial(self, key: str, keep: int) -> list[bytes]:
        """Drop the partial's chunks from index ``keep`` on; returns them."""
        dropped = [
            c
            for (c,) in self.all(
                "SELECT chunk FROM partial_chunks WHERE key = ? AND idx >= ?", (key, keep)
            )
        ]
        self.execute("DELETE FROM partial_chunks WHERE key = ? AND idx >= ?", (key, keep))
        return dropped

    def delete_partial(self, key: str) -> list[bytes]:
        """Forget a partial object; returns the chunks it used."""
        chunks = self.cut_partial(key, 0)
        self.execute("DELETE FROM partials WHERE key = ?", (key,))
        return chunks

    def partials_using(self, chunks: set[bytes]) -> list[str]:
        return [
            k
            for (k,) in self.all(
                f"SELECT DISTINCT key FROM partial_chunks WHERE chunk IN ({_marks(len(chunks))})",  # noqa: S608
                list(chunks),
            )
        ]

    def partial_chunks(self, key: str) -> list[tuple[int, bytes]]:
        return self.all("SELECT idx, chunk FROM partial_chunks WHERE key = ? ORDER BY idx", (key,))

    def partials_by_use(self) -> Iterator[tuple[str, float]]:
        """Partial objects, least recently used first."""
        sql = "SELECT key, last_used FROM partials ORDER BY last_used"
        for row in self.cur.execute(sql):  # noqa: UP028 - yield from closes the cursor early
            yield row

    def partial_keys(self) -> list[str]:
        return [k for (k,) in self.all("SELECT key FROM partials ORDER BY key")]

    # --- pins and counts -------------------------------------------------------------------

    def pin(self, digest: bytes, pinned: bool) -> None:
        if pinned:
            self.execute("INSERT OR IGNORE INTO pins(digest) VALUES (?)", (digest,))
        else:
            self.execute("DELETE FROM pins WHERE digest = ?", (digest,))

    def is_pinned(self, digest: bytes) -> bool:
        return self.one("SELECT 1 FROM pins WHERE digest = ?", (digest,)) is not None

    def pinned(self) -> set[bytes]:
        return {d for (d,) in self.all("SELECT digest FROM pins")}

    def pinned_objects(self) -> int:
        return int(
            self.one("SELECT COUNT(*) FROM objects WHERE digest IN (SELECT digest FROM pins)")[0]
        )

    def counts(self) -> tuple[int, int, int, int]:
        """Complete objects, partial objects, chunks, and the bytes of pinned objects."""
        return (
            int(self.one("SELECT COUNT(*) FROM objects")[0]),
            int(self.one("SELECT COUNT(*) FROM partials")[0]),
            int(self.one("SELECT COUNT(*) FROM chunks")[0]),
            int(
                self.one(
                    "SELECT COALESCE(SUM(size), 0) FROM objects "
                    "WHERE digest IN (SELECT digest FROM pins)"
                )[0]
            ),
        )


class Index(Database[Tx]):
    """The store's index file, its transactions carrying :class:`Tx`'s statements.

    ``generation`` counts committed transactions that were ``reshaped``; it moves right
    after the commit, under the write lock, before the transaction's ``after_commit`` work.
    """

    def __init__(self, path: Path) -> None:
        self.generation = 0
        super().__init__(path, _SCHEMA, SCHEMA_VERSION, Tx)

    def committed(self, tx: Tx) -> None:
        if tx.reshaped:
            self.generation += 1
