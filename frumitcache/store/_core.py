"""The blocking half of the store: chunk files plus index rows, kept consistent.

:class:`StoreCore` is thread-safe and never touches trio; the async :class:`~._store.Store`
calls its methods through ``trio.to_thread.run_sync`` (anything that hashes, fsyncs or
commits) or directly (small reads). The rules it keeps:

* a chunk file is written to ``tmp/``, fsynced, renamed into ``chunks/``, its directory
  fsynced, and only then is its row committed; a chunk row therefore always has its file;
* a complete object's rows are committed in one transaction after all its chunk rows exist;
* rows go first and files after (in ``after_commit``), so a crash between the two leaves an
  orphan file, never a row without a file;
* whatever fails (disk full, digest mismatch) leaves no partial state marked complete.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from frumitcache.errors import (
    CorruptChunkError,
    DigestMismatchError,
    NotInStoreError,
    StoreError,
    StoreFullError,
)
from frumitcache.store._files import (
    BytesLike,
    chunk_rel,
    fsync_dir,
    fsync_file,
    hash_file,
    is_full_error,
    remove_quietly,
    sha256_fd,
    write_temp,
    xxh3,
    xxh3_fd,
)
from frumitcache.store._index import Index, Tx
from frumitcache.store._manifest import (
    DIGEST_LEN,
    Manifest,
    RecoveryReport,
    ScrubReport,
    StoreStats,
)

# A chunk put or adopted on its own (the swarm downloads chunks before adding them to an
# object) is kept at least this long even when nothing references it yet.
FRESH_CHUNK_S = 300.0
_HEX = frozenset("0123456789abcdef")


def _is_hex_name(name: str) -> bool:
    return len(name) == 2 * DIGEST_LEN and set(name) <= _HEX


def digest_of_key(key: str) -> bytes | None:
    """The object digest a ``sha256:<hex>`` key names, else None."""
    if key.startswith("sha256:") and _is_hex_name(key[7:].lower()):
        return bytes.fromhex(key[7:])
    return None


@dataclass(frozen=True, slots=True)
class PartialSpec:
    key: str
    chunk_size: int
    expected_digest: bytes | None
    expected_size: int | None


@dataclass(slots=True)
class PartialState:
    spec: PartialSpec
    chunks: list[bytes] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    rows: int = 0  # partial_chunks rows in the index (more than len(chunks) after damage)


@dataclass(slots=True)
class _ScrubCounts:
    checked: int = 0
    bytes: int = 0
    corrupt: int = 0
    missing: int = 0
    repaired: int = 0
    objects: int = 0


class StoreCore:
    def __init__(self, root: Path, *, max_bytes: int, chunk_size: int, min_free_bytes: int) -> None:
        if chunk_size <= 0:
            raise StoreError(f"chunk size must be positive, got {chunk_size}")
        self.root = root
        self.chunks_dir = root / "chunks"
        self.tmp_dir = root / "tmp"
        self.max_bytes = max_bytes
        self.chunk_size = chunk_size
        self.min_free_bytes = min_free_bytes
        self.used = 0
        self.hits = 0
        self.misses = 0
        self.evicted_objects = 0
        self.evicted_bytes = 0
        # Readers hold object digests here; eviction checks it under use_lock in the same
        # critical section as its delete, so an opening reader and an eviction cannot cross.
        self.use_lock = threading.Lock()
        self.in_use: Counter[bytes] = Counter()
        self.live_keys: set[str] = set()  # keys with an open writer (their partial is kept)
        self._fresh: dict[bytes, float] = {}
        self._touched: dict[bytes, float] = {}
        self._touch_lock = threading.Lock()
        self._lockfile: int | None = None
        self.hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-hash")
        self._open_dirs()
        try:
            self.index = Index(root / "index.sqlite")
        except BaseException:
            self.hash_pool.shutdown(wait=False)
            self._unlock()
            raise

    # --- opening and recovery ------------------------------------------------------------

    def _open_dirs(self) -> None:
        import fcntl

        try:
            self.root.mkdir(parents=True, exist_ok=True)
            self.tmp_dir.mkdir(exist_ok=True)
            self.chunks_dir.mkdir(exist_ok=True)
            fd = os.open(self.root / "lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open store at {self.root}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"store {self.root} is in use by another process") from None
        self._lockfile = fd
        # All 256 fan-out directories exist up front, so a chunk rename never creates a
        # directory whose own entry would need another fsync.
        marker = self.chunks_dir / "ff"
        if not marker.is_dir():
            for i in range(256):
                (self.chunks_dir / f"{i:02x}").mkdir(exist_ok=True)
            fsync_dir(self.chunks_dir)
            fsync_dir(self.root)

    def recover(self) -> RecoveryReport:
        """Bring files and index back in line after a crash or power cut."""
        temps = 0
        for entry in os.scandir(self.tmp_dir):
            # Everything under tmp/ is garbage after a restart, including the
            # subdirectories other parts (the swarm) download into.
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                remove_quietly(Path(entry.path))
            temps += 1
        rows = dict(self.index.all("SELECT digest, size FROM chunks"))
        bad: list[bytes] = []
        on_disk: set[bytes] = set()
        orphans: list[Path] = []
        for sub in os.scandir(self.chunks_dir):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in os.scandir(sub.path):
                if not _is_hex_name(entry.name) or entry.name[:2] != sub.name:
                    continue  # not ours (never delete what we did not write)
                digest = bytes.fromhex(entry.name)
                if digest in rows:
                    on_disk.add(digest)
                    if entry.stat().st_size != rows[digest]:
                        bad.append(digest)
                else:
                    orphans.append(Path(entry.path))
        bad.extend(d for d in rows if d not in on_disk)
        if bad:
            self.remove_chunks(bad)
        adopted = sum(self._adopt_orphan(path) for path in orphans)
        with self.index.write("repair the index") as tx:
            # Rows that lost their chunks some other way (an interrupted older version).
            lost = [
                c for (c,) in tx.all(
                    "SELECT DISTINCT chunk FROM object_chunks oc WHERE NOT EXISTS "
                    "(SELECT 1 FROM chunks WHERE digest = oc.chunk) UNION "
                    "SELECT DISTINCT chunk FROM partial_chunks pc WHERE NOT EXISTS "
                    "(SELECT 1 FROM chunks WHERE digest = pc.chunk)"
                )
            ]
            if lost:
                self._forget_chunks(tx, set(lost))
        self.used = self.index.one("SELECT COALESCE(SUM(size), 0) FROM chunks")[0]
        return RecoveryReport(temps, adopted, len(orphans) - adopted, len(bad) + len(lost))

    def _adopt_orphan(self, path: Path) -> bool:
        # A chunk renamed into place whose row never committed: keep it if it is what its
        # name says (a resumed fetch will find it), else delete it.
        try:
            sha, xx, size = hash_file(path)
        except OSError:
            remove_quietly(path)
            return False
        if sha.hex() != path.name or size == 0:
            remove_quietly(path)
            return False
        with self.index.write("adopt an orphan chunk") as tx:
            tx.execute(
                "INSERT OR IGNORE INTO chunks(digest, size, xxh3, touched) VALUES (?, ?, ?, ?)",
                (sha, size, xx, time.time()),
            )
        return True

    def close(self) -> None:
        with contextlib.suppress(StoreError):
            self.flush_touches()
        self.hash_pool.shutdown(wait=True)
        self.index.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None

    # --- paths and small reads -------------------------------------------------------------

    def path_of(self, digest: bytes) -> Path:
        return self.chunks_dir / chunk_rel(digest)

    def chunk_size_of(self, digest: bytes) -> int | None:
        row = self.index.one("SELECT size FROM chunks WHERE digest = ?", (digest,))
        return None if row is None else int(row[0])

    def resolve(self, key_or_digest: str | bytes) -> bytes | None:
        """The digest of the complete object a key or digest names, else None."""
        with self.index.read() as tx:
            if isinstance(key_or_digest, bytes):
                digest: bytes | None = key_or_digest
            else:
                row = tx.one("SELECT digest FROM keys WHERE key = ?", (key_or_digest,))
                digest = row[0] if row and row[0] is not None else digest_of_key(key_or_digest)
            if digest is None:
                return None
            if tx.one("SELECT 1 FROM objects WHERE digest = ?", (digest,)) is None:
                return None
            return digest

    def manifest(self, digest: bytes) -> Manifest | None:
        with self.index.read() as tx:
            row = tx.one("SELECT size, chunk_size FROM objects WHERE digest = ?", (digest,))
            if row is None:
                return None
            chunks = tuple(
                c for (c,) in tx.all(
                    "SELECT chunk FROM object_chunks WHERE object = ? ORDER BY idx", (digest,)
                )
            )
        return Manifest(digest, row[0], row[1], chunks)

    def load_partial(self, key: str) -> PartialState | None:
        with self.index.read() as tx:
            row = tx.one(
                "SELECT chunk_size, expected_digest, expected_size FROM partials WHERE key = ?",
                (key,),
            )
            if row is None:
                return None
            got = tx.all(
                "SELECT pc.idx, pc.chunk, c.size FROM partial_chunks pc "
                "LEFT JOIN chunks c ON c.digest = pc.chunk WHERE pc.key = ? ORDER BY pc.idx",
                (key,),
            )
        state = PartialState(PartialSpec(key, row[0], row[1], row[2]), rows=len(got))
        for i, (idx, chunk, size) in enumerate(got):
            # Only a gapless prefix of existing chunks, full-size except perhaps the last.
            if idx != i or size is None or (state.sizes and state.sizes[-1] != row[0]):
                break
            state.chunks.append(chunk)
            state.sizes.append(size)
        return state

    # --- chunk writes ----------------------------------------------------------------------

    def _ref_partial(self, tx: Tx, spec: PartialSpec, idx: int, digest: bytes) -> None:
        tx.execute(
            "INSERT INTO partials(key, chunk_size, expected_digest, expected_size, last_used) "
            "VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET last_used = excluded.last_used, "
            "expected_digest = excluded.expected_digest, expected_size = excluded.expected_size",
            (spec.key, spec.chunk_size, spec.expected_digest, spec.expected_size, time.time()),
        )
        tx.execute(
            "INSERT OR REPLACE INTO partial_chunks(key, idx, chunk) VALUES (?, ?, ?)",
            (spec.key, idx, digest),
        )

    def ingest(
        self,
        data: BytesLike,
        digest: bytes | None = None,
        *,
        ref: tuple[PartialSpec, int] | None = None,
        object_hash: Any = None,
    ) -> bytes:
        """Store ``data`` as a chunk (verifying ``digest`` if given); returns its digest.

        ``ref`` appends it to a partial object at an index; ``object_hash`` (a hashlib
        object) is updated with the data in parallel with the chunk's own hashing.
        """
        pending = self.hash_pool.submit(object_hash.update, data) if object_hash else None
        try:
            sha = hashlib.sha256(data).digest()
            if digest is not None and sha != digest:
                raise DigestMismatchError(
                    f"chunk hashes to {sha.hex()}, expected {digest.hex()}"
                )
            if len(data) == 0:
                raise StoreError("an empty chunk cannot be stored")
            if ref is None:
                self._fresh[sha] = time.monotonic()
            self._commit_chunk(sha, xxh3(data), len(data), ref, data=data)
        finally:
            if pending is not None:
                pending.result()
        return sha

    def adopt(self, path: Path, digest: bytes, verified_xxh3: bytes | None = None) -> None:
        """Verify a finished file and move it into the store (it must be on our file system).

        ``verified_xxh3``: the caller already verified the file's bytes against an
        authenticated hash (the swarm: every block against the manifest's v2 pieces root) and
        computed its xxh3 in the same pass, so it is not hashed again (hash once per node).
        """
        if verified_xxh3 is not None:
            sha, xx = digest, verified_xxh3
            try:
                size = os.stat(path).st_size
            except OSError as exc:
                raise StoreError(f"cannot stat {path}: {exc.strerror}") from None
        else:
            try:
                sha, xx, size = hash_file(path)
            except OSError as exc:
                raise StoreError(f"cannot read {path}: {exc.strerror}") from None
        if sha != digest:
            raise DigestMismatchError(f"{path} hashes to {sha.hex()}, expected {digest.hex()}")
        if size == 0:
            raise StoreError("an empty chunk cannot be stored")
        self._fresh[sha] = time.monotonic()
        try:
            fsync_file(path)
        except OSError as exc:
            raise StoreError(f"cannot fsync {path}: {exc.strerror}") from None
        self._commit_chunk(sha, xx, size, None, source=path)

    def _commit_chunk(
        self,
        sha: bytes,
        xx: bytes,
        size: int,
        ref: tuple[PartialSpec, int] | None,
        *,
        data: BytesLike | None = None,
        source: Path | None = None,
    ) -> None:
        """Put a verified chunk in place (from ``data`` or by renaming ``source``), then
        commit its row and the partial-object reference ``ref``."""
        final = self.path_of(sha)
        if self.chunk_size_of(sha) is not None:
            # Already stored (same bytes in another object): just reference it.
            with self.index.write("reference a chunk") as tx:
                if tx.one("SELECT 1 FROM chunks WHERE digest = ?", (sha,)) is not None:
                    tx.execute("UPDATE chunks SET touched = ? WHERE digest = ?", (time.time(), sha))
                    if ref is not None:
                        self._ref_partial(tx, ref[0], ref[1], sha)
                    if source is not None:
                        tx.after_commit.append(lambda: remove_quietly(source))
                    return
        if source is None:
            assert data is not None
            temp = write_temp(self.tmp_dir, data)
        else:
            temp = source
        renamed = False
        try:
            with self.index.write("record a chunk") as tx:
                exists = tx.one("SELECT 1 FROM chunks WHERE digest = ?", (sha,)) is not None
                if exists:
                    tx.after_commit.append(lambda: remove_quietly(temp))
                else:
                    try:
                        os.rename(temp, final)
                        renamed = True
                        fsync_dir(final.parent)
                    except OSError as exc:
                        if is_full_error(exc):
                            raise StoreFullError(
                                f"no room to store chunk {sha.hex()} in {self.root}: "
                                f"{exc.strerror}"
                            ) from None
                        raise StoreError(
                            f"cannot move {temp} to {final}: {exc.strerror}"
                        ) from None
                    tx.execute(
                        "INSERT INTO chunks(digest, size, xxh3, touched) VALUES (?, ?, ?, ?)",
                        (sha, size, xx, time.time()),
                    )
                    tx.after_commit.append(lambda: self._add_used(size))
                if ref is not None:
                    self._ref_partial(tx, ref[0], ref[1], sha)
        except BaseException:
            if renamed:
                remove_quietly(final)  # the row never committed: nothing refers to the file
            elif source is None:
                remove_quietly(temp)
            raise

    def _add_used(self, n: int) -> None:
        self.used += n

    def add_ref(self, spec: PartialSpec, idx: int, digest: bytes) -> int:
        """Append an existing chunk to a partial object; returns the chunk's size."""
        with self.index.write("append a chunk") as tx:
            row = tx.one("SELECT size FROM chunks WHERE digest = ?", (digest,))
            if row is None:
                raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
            self._ref_partial(tx, spec, idx, digest)
            tx.execute("UPDATE chunks SET touched = ? WHERE digest = ?", (time.time(), digest))
        return int(row[0])

    def read_chunk(self, digest: bytes) -> bytes:
        """The chunk's bytes, checked against the stored xxh3 (SHA-256 when that disagrees)."""
        size, want = self._chunk_row(digest)
        try:
            data = self.path_of(digest).read_bytes()
        except FileNotFoundError:
            raise self._missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot read chunk {digest.hex()}: {exc.strerror}") from None
        self._judge(digest, size, want, len(data), xxh3(data), lambda: hashlib.sha256(data))
        return data

    def open_chunk(self, digest: bytes) -> int:
        """A read-only descriptor of the chunk's file, whose bytes, read through this very
        descriptor, matched the chunk's xxh3 just now (SHA-256 when that disagrees).

        This is what a local client may be handed (SCM_RIGHTS) instead of the bytes: chunk
        files are never written in place (temp file, fsync, rename; a bad chunk is unlinked),
        so the checked bytes are the bytes behind the descriptor; bit rot since the chunk was
        stored is caught here like on every read. A corrupt chunk is removed and
        CorruptChunkError raised. The caller owns (closes) the descriptor."""
        size, want = self._chunk_row(digest)
        try:
            fd = os.open(self.path_of(digest), os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise self._missing(digest) from None
        except OSError as exc:
            raise StoreError(f"cannot open chunk {digest.hex()}: {exc.strerror}") from None
        try:
            xx, length = xxh3_fd(fd)
            self._judge(digest, size, want, length, xx, lambda: sha256_fd(fd))
        except OSError as exc:
            os.close(fd)
            raise StoreError(f"cannot read chunk {digest.hex()}: {exc.strerror}") from None
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _chunk_row(self, digest: bytes) -> tuple[int, bytes]:
        row = self.index.one("SELECT size, xxh3 FROM chunks WHERE digest = ?", (digest,))
        if row is None:
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
        return int(row[0]), row[1]

    def _missing(self, digest: bytes) -> StoreError:
        if self.chunk_size_of(digest) is None:
            return NotInStoreError(f"chunk {digest.hex()} was just evicted")
        self.remove_chunks([digest])
        return CorruptChunkError(f"chunk {digest.hex()} is missing from disk")

    def _judge(
        self,
        digest: bytes,
        size: int,
        want: bytes,
        length: int,
        xx: bytes,
        sha: Callable[[], Any],
    ) -> None:
        """Accept a chunk read back as ``length`` bytes hashing to ``xx``; ``sha()`` (a
        hashlib object) settles an xxh3 disagreement. A bad chunk is removed and raised."""
        if length == size and xx == want:
            return
        if length == size and sha().digest() == digest:
            self._repair_checksum(digest, xx)
            return
        self.remove_chunks([digest])
        raise CorruptChunkError(
            f"chunk {digest.hex()} is corrupt on disk ({length} of {size} bytes, "
            "checksum mismatch); removed"
        )

    def _repair_checksum(self, digest: bytes, xx: bytes) -> None:
        with self.index.write("repair a checksum") as tx:
            tx.execute("UPDATE chunks SET xxh3 = ? WHERE digest = ?", (xx, digest))

    # --- objects ---------------------------------------------------------------------------

    def finish(self, spec: PartialSpec, manifest: Manifest) -> None:
        """Record a complete object and map its key; drops the partial rows."""
        with self.index.write("record a complete object") as tx:
            for chunk in set(manifest.chunks):
                if tx.one("SELECT 1 FROM chunks WHERE digest = ?", (chunk,)) is None:
                    raise NotInStoreError(
                        f"chunk {chunk.hex()} of {spec.key} vanished before the object was "
                        "complete"
                    )
            now = time.time()
            if tx.one("SELECT 1 FROM objects WHERE digest = ?", (manifest.digest,)) is None:
                tx.execute(
                    "INSERT INTO objects(digest, size, chunk_size, last_used) VALUES (?, ?, ?, ?)",
                    (manifest.digest, manifest.size, manifest.chunk_size, now),
                )
                tx.cur.executemany(
                    "INSERT INTO object_chunks(object, idx, chunk) VALUES (?, ?, ?)",
                    [(manifest.digest, i, c) for i, c in enumerate(manifest.chunks)],
                )
            else:
                tx.execute(
                    "UPDATE objects SET last_used = ? WHERE digest = ?", (now, manifest.digest)
                )
            self._map_key(tx, spec.key, manifest.digest)
            self._drop_partial_rows(tx, spec.key)

    def _map_key(self, tx: Tx, key: str, digest: bytes) -> None:
        tx.execute(
            "INSERT INTO keys(key, digest, meta) VALUES (?, ?, '{}') "
            "ON CONFLICT(key) DO UPDATE SET digest = excluded.digest",
            (key, digest),
        )

    def map_key(self, key: str, digest: bytes) -> None:
        with self.index.write("map a key") as tx:
            if tx.one("SELECT 1 FROM objects WHERE digest = ?", (digest,)) is None:
                raise NotInStoreError(f"object {digest.hex()} is not (completely) in the store")
            self._map_key(tx, key, digest)

    def key_meta(self, key: str) -> dict[str, str]:
        row = self.index.one("SELECT meta FROM keys WHERE key = ?", (key,))
        if row is None:
            return {}
        meta: dict[str, str] = json.loads(row[0])
        return meta

    def set_key_meta(self, key: str, meta: dict[str, str]) -> None:
        text = json.dumps({str(k): str(v) for k, v in meta.items()}, sort_keys=True)
        with self.index.write("store key metadata") as tx:
            tx.execute(
                "INSERT INTO keys(key, digest, meta) VALUES (?, NULL, ?) "
                "ON CONFLICT(key) DO UPDATE SET meta = excluded.meta",
                (key, text),
            )

    def _drop_partial_rows(self, tx: Tx, key: str) -> list[bytes]:
        chunks = [c for (c,) in tx.all("SELECT chunk FROM partial_chunks WHERE key = ?", (key,))]
        tx.execute("DELETE FROM partial_chunks WHERE key = ?", (key,))
        tx.execute("DELETE FROM partials WHERE key = ?", (key,))
        return chunks

    def trim_partial(self, key: str, keep: int) -> None:
        """Cut a partial object back to its first ``keep`` chunks."""
        with self.index.write("trim a partial object") as tx:
            dropped = [
                c for (c,) in tx.all(
                    "SELECT chunk FROM partial_chunks WHERE key = ? AND idx >= ?", (key, keep)
                )
            ]
            tx.execute("DELETE FROM partial_chunks WHERE key = ? AND idx >= ?", (key, keep))
            self._release(tx, dropped)

    def needs_eviction(self, needed: int) -> bool:
        if self.used + needed > self.max_bytes:
            return True
        return bool(self.min_free_bytes) and self.free_disk() < self.min_free_bytes + needed

    def drop_partial(self, key: str, extra: Iterable[bytes] = ()) -> int:
        """Forget a partial object and delete its chunks that nothing else uses."""
        with self.index.write("drop a partial object") as tx:
            chunks = self._drop_partial_rows(tx, key)
            return self._release(tx, [*chunks, *extra])

    def _release(self, tx: Tx, digests: Iterable[bytes], *, keep_fresh: bool = True) -> int:
        """Delete the chunks among ``digests`` nothing references; returns bytes freed."""
        freed = 0
        now = time.monotonic()
        for digest in set(digests):
            if keep_fresh and now - self._fresh.get(digest, -FRESH_CHUNK_S) < FRESH_CHUNK_S:
                continue
            if tx.one("SELECT 1 FROM object_chunks WHERE chunk = ? LIMIT 1", (digest,)):
                continue
            if tx.one("SELECT 1 FROM partial_chunks WHERE chunk = ? LIMIT 1", (digest,)):
                continue
            freed += self._delete_chunk_row(tx, digest)
        return freed

    def _delete_chunk_row(self, tx: Tx, digest: bytes) -> int:
        row = tx.one("SELECT size FROM chunks WHERE digest = ?", (digest,))
        if row is None:
            return 0
        tx.execute("DELETE FROM chunks WHERE digest = ?", (digest,))
        size = int(row[0])
        path = self.path_of(digest)

        def gone() -> None:
            remove_quietly(path)
            self._fresh.pop(digest, None)
            self.used -= size

        tx.after_commit.append(gone)
        return size

    # --- damage ----------------------------------------------------------------------------

    def remove_chunks(self, digests: Iterable[bytes]) -> int:
        """Remove damaged chunks; demote the objects that contained them. Returns how many
        complete objects were demoted."""
        with self.index.write("remove damaged chunks") as tx:
            bad = set(digests)
            for digest in bad:
                self._delete_chunk_row(tx, digest)
            return self._forget_chunks(tx, bad)

    def _forget_chunks(self, tx: Tx, bad: set[bytes]) -> int:
        """Make the index stop relying on the chunks in ``bad`` (whose rows are gone)."""
        if not bad:
            return 0
        marks = ",".join("?" * len(bad))
        objects = [
            o for (o,) in tx.all(
                f"SELECT DISTINCT object FROM object_chunks WHERE chunk IN ({marks})",  # noqa: S608
                list(bad),
            )
        ]
        for obj in objects:
            self._demote(tx, obj, bad)
        keys = [
            k for (k,) in tx.all(
                f"SELECT DISTINCT key FROM partial_chunks WHERE chunk IN ({marks})",  # noqa: S608
                list(bad),
            )
        ]
        for key in keys:
            if key in self.live_keys:
                continue  # its writer finds the chunk gone when it finishes
            rows = tx.all(
                "SELECT idx, chunk FROM partial_chunks WHERE key = ? ORDER BY idx", (key,)
            )
            cut = next(i for i, (_idx, c) in enumerate(rows) if c in bad)
            dropped = [c for _idx, c in rows[cut:]]
            tx.execute("DELETE FROM partial_chunks WHERE key = ? AND idx >= ?", (key, rows[cut][0]))
            self._release(tx, dropped)
        return len(objects)

    def _demote(self, tx: Tx, obj: bytes, bad: set[bytes]) -> None:
        """Turn a complete object with lost chunks back into a resumable partial."""
        row = tx.one("SELECT size, chunk_size FROM objects WHERE digest = ?", (obj,))
        chunks = [
            c for (c,) in tx.all(
                "SELECT chunk FROM object_chunks WHERE object = ? ORDER BY idx", (obj,)
            )
        ]
        cut = next((i for i, c in enumerate(chunks) if c in bad), len(chunks))
        keys = [k for (k,) in tx.all("SELECT key FROM keys WHERE digest = ? ORDER BY key", (obj,))]
        tx.execute("DELETE FROM object_chunks WHERE object = ?", (obj,))
        tx.execute("DELETE FROM objects WHERE digest = ?", (obj,))
        tx.execute("UPDATE keys SET digest = NULL WHERE digest = ?", (obj,))
        target = next(
            (
                k for k in keys
                if k not in self.live_keys
                and tx.one("SELECT 1 FROM partials WHERE key = ?", (k,)) is None
            ),
            None,
        )
        if target is not None and cut > 0 and row is not None:
            spec = PartialSpec(target, row[1], obj, row[0])
            for i, chunk in enumerate(chunks[:cut]):
                self._ref_partial(tx, spec, i, chunk)
        self._release(tx, chunks, keep_fresh=False)

    # --- scrub -----------------------------------------------------------------------------

    def scrub_list(self) -> list[tuple[bytes, int, bytes]]:
        return [(r[0], r[1], r[2]) for r in self.index.all("SELECT digest, size, xxh3 FROM chunks")]

    def scrub_one(self, digest: bytes, size: int, want: bytes, counts: _ScrubCounts) -> None:
        path = self.path_of(digest)
        xx = xxhash.xxh3_64()
        got = 0
        try:
            with path.open("rb", buffering=0) as f:
                while block := f.read(1 << 20):
                    xx.update(block)
                    got += len(block)
        except FileNotFoundError:
            if self.chunk_size_of(digest) is None:
                return  # evicted meanwhile
            counts.missing += 1
            counts.objects += self.remove_chunks([digest])
            return
        counts.checked += 1
        counts.bytes += got
        if got == size and xx.digest() == want:
            return
        if got != size:
            counts.missing += 1
            counts.objects += self.remove_chunks([digest])
            return
        sha, new_xx, _ = hash_file(path)
        if sha == digest:
            counts.repaired += 1
            self._repair_checksum(digest, new_xx)
            return
        counts.corrupt += 1
        counts.objects += self.remove_chunks([digest])

    @staticmethod
    def new_scrub_counts() -> _ScrubCounts:
        return _ScrubCounts()

    @staticmethod
    def scrub_report(c: _ScrubCounts) -> ScrubReport:
        return ScrubReport(c.checked, c.bytes, c.corrupt, c.missing, c.repaired, c.objects)

    # --- use, pins and eviction ------------------------------------------------------------

    def touch(self, digest: bytes) -> None:
        with self._touch_lock:
            self._touched[digest] = time.time()

    def flush_touches(self) -> None:
        with self._touch_lock:
            touched, self._touched = self._touched, {}
        limit = time.monotonic() - FRESH_CHUNK_S
        for digest, t in list(self._fresh.items()):
            if t < limit:
                self._fresh.pop(digest, None)
        if touched:
            with self.index.write("record use") as tx:
                tx.cur.executemany(
                    "UPDATE objects SET last_used = MAX(last_used, ?) WHERE digest = ?",
                    [(t, d) for d, t in touched.items()],
                )

    def pin(self, digest: bytes, pinned: bool) -> None:
        with self.index.write("pin an object") as tx:
            if pinned:
                tx.execute("INSERT OR IGNORE INTO pins(digest) VALUES (?)", (digest,))
            else:
                tx.execute("DELETE FROM pins WHERE digest = ?", (digest,))

    def free_disk(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def evict(self, needed: int) -> int:
        """Evict least recently used unpinned, unused objects (then stale partials and loose
        chunks) until ``needed`` more bytes fit under the cap and above the free-space floor."""
        self.flush_touches()
        freed = 0
        skip: set[tuple[str, Any]] = set()
        while True:
            over = self.used + needed - self.max_bytes
            free = self.free_disk() if self.min_free_bytes else 0
            short = self.min_free_bytes + needed - free if self.min_free_bytes else 0
            if max(over, short) <= 0:
                return freed
            victim = self._pick_victim(skip)
            if victim is None:
                raise StoreFullError(self._full_message(needed))
            skip.add(victim)
            freed += self._evict_one(*victim)

    def _full_message(self, needed: int) -> str:
        pinned = self.index.one(
            "SELECT COUNT(*) FROM objects WHERE digest IN (SELECT digest FROM pins)"
        )[0]
        floor = (
            f", {self.free_disk()} bytes free on disk (floor {self.min_free_bytes})"
            if self.min_free_bytes else ""
        )
        return (
            f"store {self.root} is full: {self.used} of {self.max_bytes} bytes used{floor}; "
            f"{needed} more needed and nothing left to evict ({pinned} pinned objects, "
            f"{sum(1 for v in self.in_use.values() if v)} in use, "
            f"{len(self.live_keys)} being written)"
        )

    def _pick_victim(self, skip: set[tuple[str, Any]]) -> tuple[str, Any] | None:
        """Loose chunks first (nothing uses them), then the least recently used of complete
        objects and abandoned partials."""
        now = time.monotonic()
        best: tuple[float, str, Any] | None = None
        with self.index.read() as tx:
            for (digest,) in tx.cur.execute(
                "SELECT digest FROM chunks c WHERE "
                "NOT EXISTS (SELECT 1 FROM object_chunks WHERE chunk = c.digest) AND "
                "NOT EXISTS (SELECT 1 FROM partial_chunks WHERE chunk = c.digest) "
                "ORDER BY touched"
            ):
                fresh = now - self._fresh.get(digest, -FRESH_CHUNK_S) < FRESH_CHUNK_S
                if ("c", digest) not in skip and not fresh:
                    return ("c", digest)
            for digest, used_at in tx.cur.execute(
                "SELECT digest, last_used FROM objects "
                "WHERE digest NOT IN (SELECT digest FROM pins) ORDER BY last_used"
            ):
                if ("o", digest) not in skip and not self.in_use.get(digest):
                    best = (used_at, "o", digest)
                    break
            for key, used_at in tx.cur.execute(
                "SELECT key, last_used FROM partials ORDER BY last_used"
            ):
                if ("p", key) not in skip and key not in self.live_keys:
                    if best is None or used_at < best[0]:
                        best = (used_at, "p", key)
                    break
        return None if best is None else (best[1], best[2])

    def _evict_one(self, kind: str, ident: Any) -> int:
        with self.use_lock, self.index.write("evict") as tx:
            if kind == "o":
                if self.in_use.get(ident) or tx.one(
                    "SELECT 1 FROM pins WHERE digest = ?", (ident,)
                ):
                    return 0
                chunks = [
                    c for (c,) in tx.all(
                        "SELECT chunk FROM object_chunks WHERE object = ?", (ident,)
                    )
                ]
                tx.execute("DELETE FROM object_chunks WHERE object = ?", (ident,))
                deleted = tx.execute("DELETE FROM objects WHERE digest = ?", (ident,)).rowcount
                tx.execute("DELETE FROM keys WHERE digest = ?", (ident,))
                freed = self._release(tx, chunks)
                if deleted:
                    self.evicted_objects += 1
            elif kind == "p":
                if ident in self.live_keys:
                    return 0
                freed = self._release(tx, self._drop_partial_rows(tx, ident))
            else:
                freed = self._release(tx, [ident])
        self.evicted_bytes += freed
        return freed

    # --- statistics ------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        with self.index.read() as tx:
            objects = tx.one("SELECT COUNT(*) FROM objects")[0]
            partials = tx.one("SELECT COUNT(*) FROM partials")[0]
            chunks = tx.one("SELECT COUNT(*) FROM chunks")[0]
            pinned = tx.one(
                "SELECT COALESCE(SUM(size), 0) FROM objects "
                "WHERE digest IN (SELECT digest FROM pins)"
            )[0]
        return StoreStats(
            objects=objects,
            partial_objects=partials,
            chunks=chunks,
            bytes_used=self.used,
            pinned_bytes=pinned,
            max_bytes=self.max_bytes,
            free_disk_bytes=self.free_disk(),
            hits=self.hits,
            misses=self.misses,
            evicted_objects=self.evicted_objects,
            evicted_bytes=self.evicted_bytes,
        )
