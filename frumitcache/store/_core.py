"""The blocking half of the store: chunk files plus index rows, kept consistent.

:class:`StoreCore` is thread-safe and never touches trio; the async :class:`~._store.Store`
calls its methods through ``trio.to_thread.run_sync`` (anything that hashes, fsyncs or
commits) or directly (small reads). Its jobs live one per module, each a layer over the shared
state and chunk bookkeeping of :class:`~._refs.ChunkRefs`:

* ``_recovery.py``: files and rows back in line after a crash or power cut;
* ``_ingest.py``: chunks in (rows after durable files), objects made complete;
* ``_verify.py``: chunks read back checked, and the scrub;
* ``_eviction.py``: use, pins, and staying under the size cap and above the disk floor.

This module opens and closes the store (directories, the lock file, the index) and answers
the small lookups: keys, manifests, partial objects, statistics. Every statement is
``_index.py``'s.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from frumitcache.errors import StoreError
from frumitcache.store._eviction import Eviction
from frumitcache.store._files import fsync_dir
from frumitcache.store._index import Index
from frumitcache.store._ingest import Ingest
from frumitcache.store._manifest import (
    Manifest,
    PartialState,
    StoreStats,
    digest_of_key,
)
from frumitcache.store._memo import ReadMemo
from frumitcache.store._recovery import Recovery
from frumitcache.store._verify import Verify


class StoreCore(Recovery, Ingest, Verify, Eviction):
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
        self.use_lock = threading.Lock()
        self.in_use = Counter()
        self.live_keys = set()
        self._fresh = {}
        self._touched = {}
        self._touch_lock = threading.Lock()
        self._lockfile: int | None = None
        self.hash_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store-hash")
        self._open_dirs()
        try:
            self.index = Index(root / "index.sqlite")
            self.memo = ReadMemo(self.index)
        except BaseException:
            self.hash_pool.shutdown(wait=False)
            self._unlock()
            raise

    # --- opening and closing ---------------------------------------------------------------

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

    def close(self) -> None:
        self._flush_quietly()
        self.hash_pool.shutdown(wait=True)
        self.index.close()
        self._unlock()

    def _unlock(self) -> None:
        if self._lockfile is not None:
            os.close(self._lockfile)
            self._lockfile = None

    # --- small reads -----------------------------------------------------------------------

    def resolve(self, key_or_digest: str | bytes) -> bytes | None:
        """The digest of the complete object a key or digest names, else None."""
        return self.memo.get("resolve", key_or_digest, lambda: self._resolve(key_or_digest))

    def _resolve(self, key_or_digest: str | bytes) -> bytes | None:
        with self.index.read() as tx:
            if isinstance(key_or_digest, bytes):
                digest: bytes | None = key_or_digest
            else:
                digest = tx.key_digest(key_or_digest) or digest_of_key(key_or_digest)
            if digest is None or not tx.has_object(digest):
                return None
            return digest

    def manifest(self, digest: bytes) -> Manifest | None:
        return self.memo.get("manifest", digest, lambda: self._manifest(digest))

    def _manifest(self, digest: bytes) -> Manifest | None:
        with self.index.read() as tx:
            return tx.manifest(digest)

    def load_partial(self, key: str) -> PartialState | None:
        with self.index.read() as tx:
            spec = tx.partial_spec(key)
            if spec is None:
                return None
            got = tx.partial_rows(key)
        state = PartialState(spec, rows=len(got))
        for i, (idx, chunk, size) in enumerate(got):
            # Only a gapless prefix of existing chunks, full-size except perhaps the last.
            if idx != i or size is None or (state.sizes and state.sizes[-1] != spec.chunk_size):
                break
            state.chunks.append(chunk)
            state.sizes.append(size)
        return state

    def key_meta(self, key: str) -> dict[str, str]:
        return dict(self.memo.get("key_meta", key, lambda: self._key_meta(key)))

    def _key_meta(self, key: str) -> dict[str, str]:
        with self.index.read() as tx:
            text = tx.key_meta(key)
        if text is None:
            return {}
        meta: dict[str, str] = json.loads(text)
        return meta

    def set_key_meta(self, key: str, meta: dict[str, str]) -> None:
        text = json.dumps({str(k): str(v) for k, v in meta.items()}, sort_keys=True)
        with self.index.write("store key metadata") as tx:
            tx.set_key_meta(key, text)

    def stats(self) -> StoreStats:
        with self.index.read() as tx:
            objects, partials, chunks, pinned = tx.counts()
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
