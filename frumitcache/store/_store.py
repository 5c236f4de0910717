"""The store as the agent sees it: a trio-friendly face over :class:`~._core.StoreCore`.

Anything that hashes, fsyncs or commits runs in a worker thread (``trio.to_thread``), so the
agent's event loop stays responsive on a one-core Pi; small index reads (``lookup``,
``has_chunk``) run inline on their own sqlite connection and never wait for a commit.
Writers and readers of the same key meet in :class:`~._live.LiveObject`, which wakes
readers with trio events as chunks land.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import trio

from frumitcache._digest import DIGEST_LEN
from frumitcache.errors import NotInStoreError, StoreError
from frumitcache.store._core import StoreCore
from frumitcache.store._live import LiveObject, LiveObjects
from frumitcache.store._manifest import (
    Manifest,
    PartialSpec,
    RecoveryReport,
    ScrubReport,
    StoreStats,
    digest_of_key,
)
from frumitcache.store._reader import ObjectReader
from frumitcache.store._writer import ObjectWriter

if TYPE_CHECKING:
    from frumitcache.config import Config


def _check_digest(digest: bytes) -> None:
    if not isinstance(digest, bytes) or len(digest) != DIGEST_LEN:
        raise ValueError(f"a digest is 32 bytes of SHA-256, got {digest!r}")


def _digest(digest: bytes) -> bytes:
    """Chunk methods take the raw 32-byte digest, the one type a digest has inside the package
    (hex is for file names, URLs and logs)."""
    _check_digest(digest)
    return digest


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A complete object as :meth:`Store.objects` lists it."""

    manifest: Manifest
    keys: tuple[str, ...]
    pinned: bool
    last_used: float


class Store:
    """Content-addressed chunk and object store rooted at ``root``.

    Open it with :meth:`open` (or :meth:`from_config`) inside or outside a trio run; use its
    async methods from within one. Close it with :meth:`close` (or ``with Store.open(...)``).
    """

    def __init__(self, core: StoreCore, recovery: RecoveryReport) -> None:
        self._core = core
        self.recovery = recovery  # what open() had to repair
        self.root = core.root
        self.tmp_dir = core.tmp_dir
        self.chunk_size = core.chunk_size
        self._lives = LiveObjects(core)
        self._evict_lock: trio.Lock | None = None

    # --- lifecycle -------------------------------------------------------------------------

    @classmethod
    def open(cls, root: Path, *, max_bytes: int, chunk_size: int, min_free_bytes: int = 0) -> Store:
        """Open (creating if needed) the store at ``root`` and recover from any crash:
        temp files are removed, index rows whose chunk files are missing or wrong-sized are
        dropped (their objects demoted to partial), orphan chunk files adopted or deleted."""
        core = StoreCore(
            Path(root), max_bytes=max_bytes, chunk_size=chunk_size, min_free_bytes=min_free_bytes
        )
        try:
            recovery = core.recover()
        except BaseException:
            core.close()
            raise
        return cls(core, recovery)

    @classmethod
    def from_config(cls, cfg: Config) -> Store:
        return cls.open(
            cfg.store_path,
            max_bytes=cfg.store.max_bytes,
            chunk_size=cfg.store.chunk_size,
            min_free_bytes=cfg.store.min_free_bytes,
        )

    def close(self) -> None:
        self._lives.end_all("was closed")
        self._core.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def max_bytes(self) -> int:
        return self._core.max_bytes

    # --- chunks ----------------------------------------------------------------------------

    # Chunk methods take a digest as 32 raw bytes.

    def has_chunk(self, digest: bytes) -> bool:
        return self._core.chunk_size_of(_digest(digest)) is not None

    def chunk_len(self, digest: bytes) -> int | None:
        """The stored chunk's length, or None when it is not in the store."""
        return self._core.chunk_size_of(_digest(digest))

    def chunk_path(self, digest: bytes) -> Path:
        """Path of a complete chunk file (named by its hex digest; read it, never write)."""
        digest = _digest(digest)
        path = self._core.chunk_file(digest)
        if path is None:
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
        return path

    async def put_chunk(self, data: bytes | bytearray | memoryview, digest: bytes) -> None:
        """Store a chunk after checking it hashes to ``digest`` (DigestMismatchError)."""
        digest = _digest(digest)
        if not self.has_chunk(digest):
            await self.evict(len(data))
        await trio.to_thread.run_sync(self._core.ingest, data, digest)

    async def adopt_chunk_file(
        self,
        path: Path,
        digest: bytes,
        *,
        verified_xxh3: bytes | None = None,
        verify: Callable[[Path], bytes] | None = None,
        root: bytes | None = None,
    ) -> None:
        """Verify a finished file on the store's file system (e.g. under ``tmp_dir``) and
        rename it into the store. On a mismatch the file is left where it was.

        With ``verified_xxh3`` the caller vouches that it verified the bytes already (and
        gives their xxh3 for the scrub): the file is not read again. ``verify`` does that
        check itself (it raises on bad bytes, else returns their xxh3) in the same worker
        thread as the adoption, and ``root`` is recorded with the chunk there too: one thread
        hop and one commit per chunk, which is what a Pi's budget notices."""
        digest = _digest(digest)
        if root is not None and len(root) != DIGEST_LEN:
            raise ValueError("a chunk root is 32 bytes")
        if not self.has_chunk(digest):
            await self.evict(os.stat(path).st_size)

        def adopt() -> None:
            xx = verify(Path(path)) if verify is not None else verified_xxh3
            self._core.adopt(Path(path), digest, xx, root)

        await trio.to_thread.run_sync(adopt)

    async def read_chunk(self, digest: bytes) -> bytes:
        """The chunk's bytes after an xxh3 check; a corrupt chunk is removed from the store
        and CorruptChunkError raised."""
        return await trio.to_thread.run_sync(self._core.read_chunk, _digest(digest))

    async def open_chunk(self, digest: bytes) -> int:
        """A read-only descriptor of the chunk's file whose bytes were checked (xxh3, through
        this descriptor) just now; the caller closes it. A corrupt chunk is removed and
        CorruptChunkError raised. Why a descriptor may be trusted: StoreCore.open_chunk."""
        return await trio.to_thread.run_sync(self._core.open_chunk, _digest(digest))

    def set_chunk_root(self, digest: bytes, root: bytes) -> None:
        """Remember an opaque 32-byte value with a chunk (the swarm's v2 merkle root)."""
        digest = _digest(digest)
        if len(root) != DIGEST_LEN:
            raise ValueError("a chunk root is 32 bytes")
        with self._core.index.write("set a chunk root") as tx:
            found = tx.set_chunk_root(digest, root)
        if not found:
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")

    def chunk_root(self, digest: bytes) -> bytes | None:
        with self._core.index.read() as tx:
            return tx.chunk_root(_digest(digest))

    # --- writing objects -------------------------------------------------------------------

    def open_writer(
        self,
        key: str,
        *,
        expected_digest: bytes | None = None,
        expected_size: int | None = None,
    ) -> ObjectWriter:
        """A writer for ``key``; resumes the key's partial object if one exists (see
        ``ObjectWriter.offset``). One writer per key at a time."""
        if self._lives.get(key) is not None:
            raise StoreError(f"{key} is already being written")
        if expected_digest is not None:
            _check_digest(expected_digest)
        chunks: list[bytes] = []
        sizes: list[int] = []
        partial = self._core.load_partial(key)
        if partial is not None:
            old = partial.spec
            conflict = (
                old.chunk_size != self.chunk_size
                or (old.expected_digest not in (None, expected_digest) and expected_digest)
                or (expected_size is not None and old.expected_size not in (None, expected_size))
            )
            if conflict:
                self._core.drop_partial(key)
                self._lives.drop_tail(key)
            else:
                if partial.rows > len(partial.chunks):
                    self._core.trim_partial(key, len(partial.chunks))
                chunks, sizes = partial.chunks, partial.sizes
        spec = PartialSpec(key, self.chunk_size, expected_digest, expected_size)
        live = LiveObject(key, self.chunk_size, chunks, sizes, expected_digest, expected_size)
        self._lives.add(live)
        return ObjectWriter(self._core, self._lives, self.evict, live, spec)

    def is_writing(self, key: str) -> bool:
        """Is a writer of ``key`` open in this process?"""
        return self._lives.get(key) is not None

    def kept_tail(self, key: str) -> tuple[int, bytes | None, bytes] | None:
        """``(at, expected digest, bytes)``: the unfinished chunk an aborted writer of ``key``
        left in memory (bytes from offset ``at``, a chunk boundary), if any."""
        return self._lives.peek_tail(key)

    def partial_chunks(self, key: str) -> list[bytes]:
        """Chunk digests of the key's in-progress or partial object, in order."""
        live = self._lives.get(key)
        if live is not None:
            return list(live.chunks)
        partial = self._core.load_partial(key)
        return [] if partial is None else list(partial.chunks)

    # --- objects and keys ------------------------------------------------------------------

    def lookup(self, key_or_digest: str | bytes) -> Manifest | None:
        """The manifest of a complete object by key or object digest, else None."""
        digest = self._core.resolve(key_or_digest)
        manifest = None if digest is None else self._core.manifest(digest)
        if manifest is None:
            self._core.misses += 1
        else:
            self._core.hits += 1
        return manifest

    def map_key(self, key: str, digest: bytes) -> None:
        """Make ``key`` name the complete object ``digest`` too."""
        self._core.map_key(key, digest)

    def key_meta(self, key: str) -> dict[str, str]:
        return self._core.key_meta(key)

    def set_key_meta(self, key: str, meta: dict[str, str]) -> None:
        """Replace the key's small metadata (etag, last-modified, content-type, ...)."""
        self._core.set_key_meta(key, meta)

    def _live_for(self, key_or_digest: str | bytes) -> LiveObject | None:
        if isinstance(key_or_digest, str):
            live = self._lives.get(key_or_digest)
            if live is not None:
                return live
            digest = digest_of_key(key_or_digest)
        else:
            digest = key_or_digest
        return None if digest is None else self._lives.with_digest(digest)

    @contextlib.asynccontextmanager
    async def open_reader(
        self, key_or_digest: str | bytes, offset: int = 0
    ) -> AsyncIterator[ObjectReader]:
        """Read a complete object, or one a writer in this process is still writing (the
        reader then waits for each chunk). The object stays in use (never evicted) while
        the reader is open. Raises NotInStoreError when there is neither."""
        if offset < 0:
            raise ValueError("offset must not be negative")
        reader = self._new_reader(key_or_digest, offset)
        try:
            yield reader
        finally:
            self._release_reader(reader)

    def _new_reader(self, key_or_digest: str | bytes, offset: int) -> ObjectReader:
        live = None if isinstance(key_or_digest, bytes) else self._live_for(key_or_digest)
        if live is None:
            with self._core.use_lock:
                digest = self._core.resolve(key_or_digest)
                if digest is not None:
                    self._core.in_use[digest] += 1
            if digest is None:
                live = self._live_for(key_or_digest)
                if live is None:
                    raise NotInStoreError(f"{_name(key_or_digest)} is not in the store")
            else:
                manifest = self._core.manifest(digest)
                reader = ObjectReader(self, offset=offset, manifest=manifest)
                reader.held = digest
                if manifest is None or offset > manifest.size:
                    self._release_reader(reader)
                    if manifest is None:
                        raise NotInStoreError(f"{_name(key_or_digest)} is not in the store")
                    raise StoreError(f"offset {offset} is past the end ({manifest.size} bytes)")
                self._core.touch(digest)
                return reader
        reader = ObjectReader(self, offset=offset, live=live)
        live.readers.add(reader)
        return reader

    def _release_reader(self, reader: ObjectReader) -> None:
        live = reader._live
        if live is not None:
            live.readers.discard(reader)
        if reader.held is not None:
            with self._core.use_lock:
                digest, reader.held = reader.held, None
                self._core.in_use[digest] -= 1
                if self._core.in_use[digest] <= 0:
                    del self._core.in_use[digest]

    def objects(self) -> list[StoredObject]:
        """Every complete object with the keys that name it, most recently used first."""
        with self._core.index.read() as tx:
            rows = tx.objects_by_use(newest_first=True)
            mapped = tx.mapped_keys()
            pinned = tx.pinned()
        keys: dict[bytes, list[str]] = {}
        for key, digest in mapped:
            keys.setdefault(digest, []).append(key)
        out = []
        for digest, last_used in rows:
            manifest = self._core.manifest(digest)
            if manifest is not None:
                out.append(
                    StoredObject(
                        manifest, tuple(sorted(keys.get(digest, ()))), digest in pinned, last_used
                    )
                )
        return out

    def partial_keys(self) -> list[str]:
        """Keys of objects held in part (being written, or kept to resume later)."""
        with self._core.index.read() as tx:
            return tx.partial_keys()

    async def watch_chunks(self, key: str) -> AsyncGenerator[tuple[int, bytes], None]:
        """``(index, chunk digest)`` of ``key``'s object as each chunk is stored, from chunk 0.

        Follows a writer in this process (the seeder announces chunks to the site this way,
        the moment they are stored) and ends when the object is complete. Raises
        :class:`NotInStoreError` when the writer gives up or there is nothing under ``key``.
        """
        sent = 0
        live = self._lives.get(key)
        while live is not None:
            while sent < len(live.chunks):
                yield sent, live.chunks[sent]
                sent += 1
            if live.manifest is not None or live.failure is not None:
                break
            await live.wait_changed()
        if live is not None and live.failure is not None:
            raise NotInStoreError(f"{key}: the writer stopped ({live.failure})")
        digest = self._core.resolve(key)
        manifest = None if digest is None else self._core.manifest(digest)
        if manifest is None:
            raise NotInStoreError(f"{key} is not in the store")
        for index in range(sent, len(manifest.chunks)):
            yield index, manifest.chunks[index]

    # --- use, pins, eviction ---------------------------------------------------------------

    def touch(self, digest: bytes) -> None:
        """Record a use of the object (LRU)."""
        self._core.touch(digest)

    def pin(self, digest: bytes) -> None:
        """Never evict the object ``digest`` (it may arrive later; the pin waits for it)."""
        _check_digest(digest)
        self._core.pin(digest, True)

    def unpin(self, digest: bytes) -> None:
        self._core.pin(digest, False)

    def is_pinned(self, digest: bytes) -> bool:
        with self._core.index.read() as tx:
            return tx.is_pinned(digest)

    def stats(self) -> StoreStats:
        return self._core.stats()

    async def evict(self, needed: int = 0) -> int:
        """Free space until ``needed`` more bytes fit under ``max_bytes`` (and above the
        free-disk floor); returns the bytes freed. StoreFullError when nothing evictable is
        left."""
        if not self._core.needs_eviction(needed):
            return 0
        if self._evict_lock is None:
            self._evict_lock = trio.Lock()
        async with self._evict_lock:
            return await trio.to_thread.run_sync(self._core.evict, needed)

    async def scrub(self) -> ScrubReport:
        """Re-check every chunk (xxh3, then SHA-256 when it disagrees); remove bad chunks
        and demote the objects that had them to partial (resumable) objects."""
        counts = self._core.new_scrub_counts()
        for digest, size, xx in await trio.to_thread.run_sync(self._core.scrub_list):
            await trio.to_thread.run_sync(self._core.scrub_one, digest, size, xx, counts)
        return self._core.scrub_report(counts)


def _name(key_or_digest: str | bytes) -> str:
    if isinstance(key_or_digest, bytes):
        return f"object {key_or_digest.hex()}"
    return key_or_digest
