"""What every job of the store's blocking core shares: its state, and letting go of chunks.

:class:`ChunkRefs` is the base of :class:`~._core.StoreCore`'s jobs (``_recovery.py``,
``_ingest.py``, ``_eviction.py``, ``_scrub.py``). It holds the state they share and the two
ways a chunk leaves the store: *released* when nothing references it any more (bytes freed),
and *forgotten* when it is damaged, which demotes the complete objects that used it back to
resumable partial objects so the next fetch fills the gap.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from frumitcache.store._files import chunk_rel, remove_quietly
from frumitcache.store._index import Index, Tx
from frumitcache.store._manifest import PartialSpec
from frumitcache.store._memo import ReadMemo

# A chunk put or adopted on its own (the swarm downloads chunks before adding them to an
# object) is kept at least this long even when nothing references it yet.
FRESH_CHUNK_S = 300.0


class ChunkRefs:
    """The store core's shared state (set by :class:`~._core.StoreCore`'s ``__init__``)."""

    root: Path
    chunks_dir: Path
    tmp_dir: Path
    index: Index
    memo: ReadMemo  # the index's small reads, in memory while current
    max_bytes: int
    chunk_size: int
    min_free_bytes: int
    used: int  # bytes of chunk files the index holds
    hash_pool: ThreadPoolExecutor
    # Readers hold object digests in ``in_use``; eviction checks it under ``use_lock`` in the
    # same critical section as its delete, so an opening reader and an eviction cannot cross.
    use_lock: threading.Lock
    in_use: Counter[bytes]
    live_keys: set[str]  # keys with an open writer (their partial is kept)
    _fresh: dict[bytes, float]  # chunk -> monotonic time it arrived on its own

    def path_of(self, digest: bytes) -> Path:
        return self.chunks_dir / chunk_rel(digest)

    def chunk_size_of(self, digest: bytes) -> int | None:
        # A chunk's arrival does not move the memo's generation: only its presence is kept.
        return self.memo.get(
            "chunk_size", digest, lambda: self._chunk_size(digest), keep_none=False
        )

    def chunk_file(self, digest: bytes) -> Path | None:
        """The complete chunk's file, or None when the chunk is not in the store."""
        return self.memo.get(
            "chunk_file", digest, lambda: self._chunk_file(digest), keep_none=False
        )

    def _chunk_file(self, digest: bytes) -> Path | None:
        return None if self._chunk_size(digest) is None else self.path_of(digest)

    def _chunk_size(self, digest: bytes) -> int | None:
        with self.index.read() as tx:
            return tx.chunk_size(digest)

    def _is_fresh(self, digest: bytes, now: float) -> bool:
        return now - self._fresh.get(digest, -FRESH_CHUNK_S) < FRESH_CHUNK_S

    def _ref_partial(self, tx: Tx, spec: PartialSpec, idx: int, digest: bytes) -> None:
        tx.ref_partial(spec, idx, digest, time.time())

    def _repair_checksum(self, digest: bytes, xx: bytes) -> None:
        with self.index.write("repair a checksum") as tx:
            tx.set_chunk_xxh3(digest, xx)

    # --- release ---------------------------------------------------------------------------

    def _release(self, tx: Tx, digests: Iterable[bytes], *, keep_fresh: bool = True) -> int:
        """Delete the chunks among ``digests`` nothing references; returns bytes freed."""
        freed = 0
        now = time.monotonic()
        for digest in set(digests):
            if keep_fresh and self._is_fresh(digest, now):
                continue
            if tx.chunk_is_referenced(digest):
                continue
            freed += self._delete_chunk_row(tx, digest)
        return freed

    def _delete_chunk_row(self, tx: Tx, digest: bytes) -> int:
        size = tx.chunk_size(digest)
        if size is None:
            return 0
        tx.delete_chunk(digest)
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
        objects = tx.objects_using(bad)
        for obj in objects:
            self._demote(tx, obj, bad)
        for key in tx.partials_using(bad):
            if key in self.live_keys:
                continue  # its writer finds the chunk gone when it finishes
            rows = tx.partial_chunks(key)
            first_bad = next(idx for idx, c in rows if c in bad)
            self._release(tx, tx.cut_partial(key, first_bad))
        return len(objects)

    def _demote(self, tx: Tx, obj: bytes, bad: set[bytes]) -> None:
        """Turn a complete object with lost chunks back into a resumable partial."""
        sizes = tx.object_sizes(obj)
        chunks = tx.object_chunks(obj)
        cut = next((i for i, c in enumerate(chunks) if c in bad), len(chunks))
        keys = tx.keys_of(obj)
        tx.delete_object(obj)
        tx.unmap_object(obj)
        target = next((k for k in keys if k not in self.live_keys and not tx.has_partial(k)), None)
        if target is not None and cut > 0 and sizes is not None:
            spec = PartialSpec(target, sizes[1], obj, sizes[0])
            for i, chunk in enumerate(chunks[:cut]):
                self._ref_partial(tx, spec, i, chunk)
        self._release(tx, chunks, keep_fresh=False)
