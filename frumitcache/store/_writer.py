"""Writing an object chunk by chunk, resumably, with readers following along.

An :class:`ObjectWriter` cuts the bytes it is given into chunks of the store's chunk size.
Each full chunk is hashed (SHA-256 for its name, xxh3 for scrubs), written to a temp file,
fsynced and renamed into place, and only then recorded in the index as the next chunk of the
key's *partial object*; then readers waiting on the key are woken. :meth:`finish` writes the
short tail chunk, checks the whole-object digest and size, and turns the partial into a
complete object in one transaction. Until then nothing about the object is complete.

A partial object survives :meth:`abort`, a crash and a power cut: the next writer for the
key resumes at ``offset`` (a whole number of chunks), so a resumed fetch asks the origin only
for the rest (HTTP Range).
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from types import TracebackType

import trio

from frumitcache.errors import DigestMismatchError, NotInStoreError, StoreError
from frumitcache.store._core import StoreCore
from frumitcache.store._live import LiveObject, LiveObjects
from frumitcache.store._manifest import Manifest, PartialSpec


class ObjectWriter:
    """Writes one object under ``key``; get one from :meth:`Store.open_writer`.

    ``offset`` is the number of bytes written so far (stored chunks plus the buffered
    tail); right after opening it is what a resumed partial already holds (an aborted
    writer's tail included: :meth:`abort` keeps it in memory for the next writer). ``chunks`` are
    the digests of the chunks stored so far, in order.

    Use it as ``async with store.open_writer(key) as w: ... await w.finish()``; leaving the
    block without :meth:`finish` aborts (keeps the partial for a resume). After any error in
    :meth:`write`, :meth:`add_chunk` or :meth:`finish` the writer is aborted;
    :meth:`discard` still drops what it stored.
    """

    def __init__(
        self,
        core: StoreCore,
        lives: LiveObjects,
        evict: Callable[[int], Awaitable[int]],
        live: LiveObject,
        spec: PartialSpec,
    ) -> None:
        self._core = core
        self._lives = lives
        self._evict = evict  # makes room before a chunk is stored (Store.evict)
        self._live = live
        self._spec = spec
        self.key = spec.key
        self.chunk_size = spec.chunk_size
        self.expected_digest = spec.expected_digest
        self.expected_size = spec.expected_size
        self.chunks: list[bytes] = live.chunks
        self._sizes = live.sizes
        self._stored = sum(live.sizes)
        self._buf = lives.take_tail(spec.key, self._stored, spec.expected_digest)
        self._restored = len(self._buf)  # bytes of the buffer taken back from an abort
        self._kept = 0  # bytes of the buffer that abort kept for the next writer
        self._hasher = hashlib.sha256()
        self._hashed = 0  # chunks already fed to _hasher
        self._closed = False
        self._lock = trio.Lock()

    # --- state -----------------------------------------------------------------------------

    @property
    def offset(self) -> int:
        return self._stored + len(self._buf) + self._kept

    @property
    def stored(self) -> int:
        """Bytes in stored chunks (what a crash right now would keep)."""
        return self._stored

    @property
    def closed(self) -> bool:
        return self._closed

    def _tail_closed(self) -> bool:
        return bool(self._sizes) and self._sizes[-1] < self.chunk_size

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError(f"the writer for {self.key} is closed")

    async def __aenter__(self) -> ObjectWriter:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # No checkpoint here: it could replace the exception that is leaving the block.
        self._abort_now("aborted")

    # --- writing ---------------------------------------------------------------------------

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes; every full chunk is stored durably before this returns."""
        async with self._lock:
            self._check_open()
            view = memoryview(data).cast("B")
            if not view:
                return
            self._leave_restored()
            if self._tail_closed():
                self._abort_now("failed")
                raise StoreError(f"{self.key}: cannot write after a short chunk")
            if self.expected_size is not None and self.offset + len(view) > self.expected_size:
                await self._discard_now()
                raise DigestMismatchError(
                    f"{self.key}: more than the expected {self.expected_size} bytes"
                )
            while view:
                room = self.chunk_size - len(self._buf)
                self._buf += view[:room]
                view = view[room:]
                if len(self._buf) == self.chunk_size:
                    full, self._buf = self._buf, bytearray()
                    await self._put(full)

    def _leave_restored(self) -> None:
        # The kept tail this writer took back stays listed until its bytes change here.
        if self._restored:
            self._restored = 0
            self._lives.drop_tail(self.key)

    async def _put(self, data: bytearray) -> None:
        idx = len(self.chunks)
        try:
            await self._evict(len(data))
            digest = await trio.to_thread.run_sync(self._put_sync, data, idx)
        except BaseException:
            self._abort_now("failed")
            raise
        self._append(digest, len(data))

    def _put_sync(self, data: bytearray, idx: int) -> bytes:
        self._catch_up(idx)
        digest = self._core.ingest(data, ref=(self._spec, idx), object_hash=self._hasher)
        self._hashed = idx + 1
        return digest

    def _catch_up(self, upto: int) -> None:
        # Chunks that did not pass through write() (a resumed partial, add_chunk) are read
        # back so the whole-object SHA-256 covers every byte in order.
        while self._hashed < upto:
            self._hasher.update(self._core.read_chunk(self.chunks[self._hashed]))
            self._hashed += 1

    def _append(self, digest: bytes, size: int) -> None:
        self.chunks.append(digest)
        self._sizes.append(size)
        self._stored += size
        self._live.notify()

    async def add_chunk(self, digest: bytes) -> None:
        """Append a chunk already in the store (e.g. from the swarm). It must be full-size
        unless it is the last one."""
        async with self._lock:
            self._check_open()
            try:
                await self._add_chunk(digest)
            except BaseException:
                self._abort_now("failed")
                raise

    async def _add_chunk(self, digest: bytes) -> None:
        if self._buf and len(self._buf) == self._restored:
            # The verified whole chunk supersedes the bytes of it an aborted fetch left.
            self._buf = bytearray()
            self._leave_restored()
        if self._buf:
            raise StoreError(f"{self.key}: add_chunk after a partial write()")
        if self._tail_closed():
            raise StoreError(f"{self.key}: cannot add a chunk after a short chunk")
        size = self._core.chunk_size_of(digest)
        if size is None:
            raise NotInStoreError(f"chunk {digest.hex()} is not in the store")
        if size > self.chunk_size:
            raise StoreError(
                f"chunk {digest.hex()} has {size} bytes, more than the chunk size {self.chunk_size}"
            )
        if self.expected_size is not None and self.offset + size > self.expected_size:
            await self._discard_now()
            raise DigestMismatchError(
                f"{self.key}: more than the expected {self.expected_size} bytes"
            )
        idx = len(self.chunks)
        size = await trio.to_thread.run_sync(self._core.add_ref, self._spec, idx, digest)
        self._append(digest, size)

    async def finish(self, *, site_digest: bytes | None = None) -> Manifest:
        """Store the tail, verify, and make the object complete under its key.

        ``site_digest``: the object's SHA-256 from a site-authenticated manifest, whose chunks
        were each verified when they arrived. The node that ingested from the origin computed
        it while streaming; this node trusts it rather than reading every chunk back to hash
        the whole object again (each byte is hashed once per node).
        """
        async with self._lock:
            self._check_open()
            if self._buf:
                self._leave_restored()
                tail, self._buf = self._buf, bytearray()
                await self._put(tail)
            if site_digest is None:
                try:
                    await trio.to_thread.run_sync(self._catch_up, len(self.chunks))
                except BaseException:
                    self._abort_now("failed")
                    raise
                digest = self._hasher.digest()
            else:
                digest = site_digest
            size = self._stored
            problem = None
            if self.expected_size is not None and size != self.expected_size:
                problem = f"{size} bytes, expected {self.expected_size}"
            elif self.expected_digest is not None and digest != self.expected_digest:
                problem = f"SHA-256 {digest.hex()}, expected {self.expected_digest.hex()}"
            if problem is not None:
                await self._discard_now()
                raise DigestMismatchError(f"{self.key}: {problem}; nothing stored")
            manifest = Manifest(digest, size, self.chunk_size, tuple(self.chunks))
            try:
                await trio.to_thread.run_sync(self._core.finish, self._spec, manifest)
            except BaseException:
                self._abort_now("failed")
                raise
            self._closed = True
            self._lives.complete(self._live, manifest)
            return manifest

    # --- ending without an object ----------------------------------------------------------

    def _abort_now(self, how: str) -> None:
        if not self._closed:
            self._closed = True
            if how == "aborted" and self._buf and not self._tail_closed():
                self._lives.keep_tail(self.key, self._stored, self.expected_digest, self._buf)
                self._kept = len(self._buf)
            elif how != "aborted":
                self._lives.drop_tail(self.key)
            self._buf = bytearray()
            self._lives.end(self._live, how)

    async def abort(self) -> None:
        """Stop; keep the full chunks stored so far as a resumable partial object, and the
        buffered tail in memory (:meth:`Store.open_writer` of the key takes it back)."""
        self._abort_now("aborted")
        await trio.lowlevel.checkpoint()

    async def discard(self) -> None:
        """Stop and drop everything this partial object stored (chunks other objects share
        stay)."""
        self._abort_now("discarded")  # wakes readers now, even if a write is under way
        with trio.CancelScope(shield=True):
            async with self._lock:  # let a write in another task land before dropping
                await self._discard_now()

    async def _discard_now(self) -> None:
        self._abort_now("discarded")
        if self._lives.get(self.key) is not None:
            return  # a new writer took the key over after we ended; its partial is its own
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(self._core.drop_partial, self.key)
