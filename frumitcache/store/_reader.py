"""Reading an object chunk by chunk, including one that is still being written.

An :class:`ObjectReader` is an async iterator of verified chunk bytes (each chunk checked
against its xxh3 as it is read; SHA-256 when that disagrees). It holds at most one chunk in
memory. For an object still being written by a writer in this process it waits for each
chunk to be stored, so a client gets its first bytes about one chunk-time after the writer
does (cut-through). While it is open the object is *in use* and eviction leaves it alone.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from frumitcache.errors import NotInStoreError
from frumitcache.store._live import LiveObject
from frumitcache.store._manifest import Manifest


class ChunkSource(Protocol):
    """Where a reader gets checked chunk bytes (the store)."""

    async def read_chunk(self, digest: bytes) -> bytes: ...

    async def open_chunk(self, digest: bytes) -> int: ...


@dataclass(slots=True)
class HeldChunk:
    """An open read-only descriptor of a stored chunk file, its bytes checked through it when
    it was opened (:meth:`Store.open_chunk`), and the part that belongs to the read: ``count``
    bytes from ``skip``. Whoever holds it closes it (or hands it on, e.g. with SCM_RIGHTS)."""

    fd: int
    skip: int
    count: int

    def __len__(self) -> int:
        return self.count

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)


class ObjectReader:
    """Yields the object's bytes from ``offset`` on, one chunk (or the rest of one) at a time.

    ``size`` is the object's size, or None while a live writer does not know it yet;
    ``manifest`` is set once the object is complete.
    """

    def __init__(
        self,
        store: ChunkSource,
        *,
        offset: int,
        manifest: Manifest | None = None,
        live: LiveObject | None = None,
    ) -> None:
        self._store = store
        self._manifest = manifest
        self._live = live
        chunk_size = manifest.chunk_size if manifest is not None else live.chunk_size  # type: ignore[union-attr]
        self.offset = offset
        self._idx, self._skip = divmod(offset, chunk_size)
        self.held: bytes | None = None  # object digest this reader keeps in use

    @property
    def manifest(self) -> Manifest | None:
        if self._manifest is None and self._live is not None:
            return self._live.manifest
        return self._manifest

    @property
    def size(self) -> int | None:
        manifest = self.manifest
        if manifest is not None:
            return manifest.size
        assert self._live is not None
        return self._live.expected_size

    @property
    def key(self) -> str | None:
        return None if self._live is None else self._live.key

    def __aiter__(self) -> ObjectReader:
        return self

    async def __anext__(self) -> bytes:
        while True:
            digest = await self._next_digest()
            if digest is None:
                raise StopAsyncIteration
            data = await self._store.read_chunk(digest)
            self._idx += 1
            if self._skip:
                data, self._skip = data[self._skip :], 0
            if data:
                return data

    async def files(self) -> AsyncIterator[HeldChunk]:
        """The same read as descriptors of the verified chunk files instead of their bytes
        (nothing is read into Python; each file's xxh3 is checked as it is opened)."""
        while (digest := await self._next_digest()) is not None:
            fd = await self._store.open_chunk(digest)
            try:
                size = os.fstat(fd).st_size
            except BaseException:
                os.close(fd)
                raise
            self._idx += 1
            skip, self._skip = self._skip, 0
            if size <= skip:
                os.close(fd)
                continue
            yield HeldChunk(fd, skip, size - skip)

    async def _next_digest(self) -> bytes | None:
        while True:
            manifest = self.manifest
            if manifest is not None:
                self._manifest = manifest
                if self._idx >= len(manifest.chunks):
                    return None
                return manifest.chunks[self._idx]
            live = self._live
            assert live is not None
            if live.failure is not None:
                raise NotInStoreError(
                    f"{live.key}: the writer {live.failure} before the object was complete"
                )
            if self._idx < len(live.chunks):
                return live.chunks[self._idx]
            await live.wait_changed()

    async def readall(self) -> bytes:
        """Everything from ``offset`` to the end (for small objects and tests)."""
        parts = [chunk async for chunk in self]
        return b"".join(parts)
