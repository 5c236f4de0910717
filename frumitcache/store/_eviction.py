"""Keeping the store under its size cap and above its free-disk floor: use tracking (LRU),
pins, and eviction of loose chunks, unused complete objects and abandoned partials.

Nothing in use is evicted: a pinned object, one a reader holds (``in_use``, checked under
``use_lock`` in the same critical section as the delete), a partial with an open writer, or a
chunk that arrived on its own less than ``FRESH_CHUNK_S`` ago.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from frumitcache.errors import StoreError, StoreFullError
from frumitcache.store._refs import FRESH_CHUNK_S, ChunkRefs


class Eviction(ChunkRefs):
    evicted_objects: int
    evicted_bytes: int
    _touched: dict[bytes, float]  # object -> wall-clock time of its last use, not yet written
    _touch_lock: threading.Lock

    # --- use and pins ----------------------------------------------------------------------

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
                tx.touch_objects(touched.items())

    def _flush_quietly(self) -> None:
        with contextlib.suppress(StoreError):
            self.flush_touches()

    def pin(self, digest: bytes, pinned: bool) -> None:
        with self.index.write("pin an object") as tx:
            tx.pin(digest, pinned)

    # --- partial objects -------------------------------------------------------------------

    def trim_partial(self, key: str, keep: int) -> None:
        """Cut a partial object back to its first ``keep`` chunks."""
        with self.index.write("trim a partial object") as tx:
            self._release(tx, tx.cut_partial(key, keep))

    def drop_partial(self, key: str, extra: Iterable[bytes] = ()) -> int:
        """Forget a partial object and delete its chunks that nothing else uses."""
        with self.index.write("drop a partial object") as tx:
            return self._release(tx, [*tx.delete_partial(key), *extra])

    # --- eviction --------------------------------------------------------------------------

    def free_disk(self) -> int:
        st = os.statvfs(self.root)
        return st.f_bavail * st.f_frsize

    def needs_eviction(self, needed: int) -> bool:
        if self.used + needed > self.max_bytes:
            return True
        return bool(self.min_free_bytes) and self.free_disk() < self.min_free_bytes + needed

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
        with self.index.read() as tx:
            pinned = tx.pinned_objects()
        floor = (
            f", {self.free_disk()} bytes free on disk (floor {self.min_free_bytes})"
            if self.min_free_bytes
            else ""
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
            for digest in tx.loose_chunks():
                if ("c", digest) not in skip and not self._is_fresh(digest, now):
                    return ("c", digest)
            for digest, used_at in tx.unpinned_by_use():
                if ("o", digest) not in skip and not self.in_use.get(digest):
                    best = (used_at, "o", digest)
                    break
            for key, used_at in tx.partials_by_use():
                if ("p", key) not in skip and key not in self.live_keys:
                    if best is None or used_at < best[0]:
                        best = (used_at, "p", key)
                    break
        return None if best is None else (best[1], best[2])

    def _evict_one(self, kind: str, ident: Any) -> int:
        with self.use_lock, self.index.write("evict") as tx:
            if kind == "o":
                if self.in_use.get(ident) or tx.is_pinned(ident):
                    return 0
                chunks = tx.object_chunks(ident)
                deleted = tx.delete_object(ident)
                tx.delete_keys_of(ident)
                freed = self._release(tx, chunks)
                if deleted:
                    self.evicted_objects += 1
            elif kind == "p":
                if ident in self.live_keys:
                    return 0
                freed = self._release(tx, tx.delete_partial(ident))
            else:
                freed = self._release(tx, [ident])
        self.evicted_bytes += freed
        return freed
