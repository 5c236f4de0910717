"""Objects being written in this process, where their writer and their readers meet.

A :class:`LiveObject` is what readers see of an object while its writer is open: the chunks
stored so far and an event that wakes them as each one lands (cut-through reads). The
:class:`LiveObjects` table holds them by key; when a writer completes, the readers following
it are handed the finished object *before* anything else runs, so an eviction cannot slip in
between.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING, Protocol

import trio

from frumitcache.store._manifest import Manifest

if TYPE_CHECKING:
    from frumitcache.store._core import StoreCore


class Holder(Protocol):
    """A reader: ``held`` is the complete object it keeps in use (never evicted), if any."""

    held: bytes | None


class LiveObject:
    """What readers in this process see of an object while its writer is open."""

    __slots__ = (
        "_changed",
        "chunk_size",
        "chunks",
        "expected_digest",
        "expected_size",
        "failure",
        "key",
        "manifest",
        "readers",
        "sizes",
    )

    def __init__(
        self,
        key: str,
        chunk_size: int,
        chunks: list[bytes],
        sizes: list[int],
        expected_digest: bytes | None,
        expected_size: int | None,
    ) -> None:
        self.key = key
        self.chunk_size = chunk_size
        self.chunks = chunks
        self.sizes = sizes
        self.expected_digest = expected_digest
        self.expected_size = expected_size
        self.manifest: Manifest | None = None
        self.failure: str | None = None
        self.readers: set[Holder] = set()
        self._changed = trio.Event()

    def notify(self) -> None:
        changed, self._changed = self._changed, trio.Event()
        changed.set()

    async def wait_changed(self) -> None:
        await self._changed.wait()


#: Aborted writers' buffered tails kept in memory (each under one chunk), newest first out.
MAX_TAILS = 2


class LiveObjects:
    """The live objects of one store, by key (one writer per key at a time), and the tails
    of aborted writers: the bytes of a chunk not yet full when an origin fetch stopped (a
    fenced seeder), which the next writer of the key takes back so its Range resume starts at
    the byte it stopped at, not at the chunk's start."""

    def __init__(self, core: StoreCore) -> None:
        self._core = core
        self._by_key: dict[str, LiveObject] = {}
        self._tails: OrderedDict[str, tuple[int, bytes | None, bytearray]] = OrderedDict()

    def keep_tail(self, key: str, at: int, expected: bytes | None, tail: bytearray) -> None:
        """Keep ``tail``, the bytes of ``key``'s object (of digest ``expected``, if known)
        from byte ``at`` (a chunk boundary)."""
        self._tails[key] = (at, expected, tail)
        self._tails.move_to_end(key)
        while len(self._tails) > MAX_TAILS:
            self._tails.popitem(last=False)

    def take_tail(self, key: str, at: int, expected: bytes | None) -> bytearray:
        """A copy of ``key``'s kept tail if it starts at byte ``at`` (right after the stored
        chunks) and was written expecting no other digest than ``expected``; a tail that does
        not fit is dropped. One that fits stays listed (:meth:`peek_tail`: a seeder taking
        over asks for it) until the writer that took it changes it (``drop_tail``) or ends."""
        kept = self._tails.get(key)
        if kept is None:
            return bytearray()
        if kept[0] != at or (expected and kept[1] not in (None, expected)):
            del self._tails[key]
            return bytearray()
        return bytearray(kept[2])

    def peek_tail(self, key: str) -> tuple[int, bytes | None, bytes] | None:
        """``(at, expected digest, bytes)`` of ``key``'s kept tail, if any."""
        kept = self._tails.get(key)
        return None if kept is None else (kept[0], kept[1], bytes(kept[2]))

    def drop_tail(self, key: str) -> None:
        self._tails.pop(key, None)

    def get(self, key: str) -> LiveObject | None:
        return self._by_key.get(key)

    def add(self, live: LiveObject) -> None:
        self._by_key[live.key] = live
        self._core.live_keys.add(live.key)  # eviction leaves its partial alone

    def with_digest(self, digest: bytes) -> LiveObject | None:
        """A live object expected to hash to ``digest``."""
        return next((v for v in self._by_key.values() if v.expected_digest == digest), None)

    def end(self, live: LiveObject, how: str) -> None:
        """The writer stopped without an object; readers following it fail with ``how``."""
        live.failure = how
        self._forget(live)

    def end_all(self, how: str) -> None:
        for live in list(self._by_key.values()):
            self.end(live, how)

    def complete(self, live: LiveObject, manifest: Manifest) -> None:
        """The writer made ``manifest`` complete: its readers now hold the object."""
        core = self._core
        with core.use_lock:
            for reader in live.readers:
                if reader.held is None:
                    reader.held = manifest.digest
                    core.in_use[manifest.digest] += 1
        live.manifest = manifest
        self._forget(live)

    def _forget(self, live: LiveObject) -> None:
        if self._by_key.get(live.key) is live:
            del self._by_key[live.key]
            self._core.live_keys.discard(live.key)
        live.notify()
