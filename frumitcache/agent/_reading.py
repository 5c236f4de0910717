"""The agent's :class:`~frumitcache.content.Content`: verified reads of a stored object, or of
one a flight is still bringing in (cut-through, across writer hand-overs).

Every byte comes out of the store, so it was hashed when stored. For an object whose SHA-256
is known before it arrives, the last piece of a read is released only once the whole object
matched it: a bad object never reaches a client complete, and the store never keeps it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from typing import TypeVar

from frumitcache._log import get_logger
from frumitcache.agent._flight import Flight, wait_any
from frumitcache.content import ChunkFile, ContentInfo, Piece
from frumitcache.errors import (
    FetchRestartedError,
    FrumitcacheError,
    NotInStoreError,
    OriginUnreachableError,
)
from frumitcache.store import HeldChunk, Manifest, ObjectReader, Store

log = get_logger("content")

#: Times a read whose fetch started over before it handed out a byte follows the new fetch.
#: The read learns of start-overs when the flight ends, and an ended flight does not start
#: over again: one is the rule, the bound only keeps the loop finite.
READ_AGAIN = 2


class _Unsent(Exception):
    """The fetch started over before the read handed out a byte (``error`` if not read again)."""

    def __init__(self, error: FetchRestartedError) -> None:
        super().__init__(str(error))
        self.error = error


def _cut(chunk: bytes, pos: int, end: int) -> bytes:
    """The part of ``chunk`` (starting at ``pos``) before ``end``; only a range's last piece
    is sliced (a 4 MiB copy per chunk costs a Pi dearly)."""
    return chunk if len(chunk) <= end - pos else chunk[: end - pos]


class StoredContent:
    """A complete object, read by its digest (stable while another version of the URL lands)."""

    def __init__(self, info: ContentInfo, store: Store, manifest: Manifest) -> None:
        self.info = info
        self._store = store
        self._manifest = manifest

    @asynccontextmanager
    async def read(self, start: int, end: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async with (
            self._store.open_reader(self._manifest.digest, offset=start) as reader,
            aclosing(self._pieces(reader, start, end)) as pieces,
        ):
            yield pieces

    async def _pieces(
        self, reader: AsyncIterator[bytes], start: int, end: int
    ) -> AsyncGenerator[bytes, None]:
        reached = start
        if reached < end:
            async for chunk in reader:
                piece = _cut(chunk, reached, end)
                reached += len(piece)
                yield piece
                if reached >= end:
                    return
        if reached < end:
            raise NotInStoreError(f"the object ended at byte {reached}, {self.info.size} announced")

    @asynccontextmanager
    async def read_files(self, start: int, end: int) -> AsyncIterator[AsyncIterator[Piece]]:
        # The open reader keeps the object in use: eviction leaves its chunk files alone.
        async with (
            self._store.open_reader(self._manifest.digest, offset=start),
            aclosing(self._files(start, end)) as files,
        ):
            yield files

    async def _files(self, start: int, end: int) -> AsyncGenerator[Piece, None]:
        manifest = self._manifest
        size = manifest.chunk_size
        end = min(end, manifest.size)
        for index in range(start // size, (end + size - 1) // size):
            first = index * size
            offset = max(0, start - first)
            count = min(end, first + size) - first - offset
            if count > 0:
                yield ChunkFile(self._store.chunk_path(manifest.chunks[index]), offset, count)


class FlightContent:
    """An object a :class:`Flight` is still bringing in; ``hold_back`` when its SHA-256 was
    known up front (the range's last piece waits for the whole-object check)."""

    def __init__(self, info: ContentInfo, store: Store, flight: Flight, *, hold_back: bool) -> None:
        self.info = info
        self._store = store
        self._flight = flight
        self._hold_back = hold_back

    @asynccontextmanager
    async def read(self, start: int, end: int) -> AsyncIterator[AsyncIterator[bytes]]:
        # aclosing: a client that hangs up releases the store reader at once, not at GC (and
        # a reader left half-way leaves no suspended generator for the collector).
        async with aclosing(self._again(start, end)) as pieces:
            yield pieces

    async def _again(self, start: int, end: int) -> AsyncGenerator[bytes, None]:
        """The range's pieces, read again (up to :data:`READ_AGAIN` times) when the fetch
        started over before this read handed out a byte: with ``hold_back`` the object's
        SHA-256 is fixed, so the new fetch brings the same bytes, and the client (a door
        whose response has not begun) need not be told to ask again."""
        for left in range(READ_AGAIN, -1, -1):
            async with (
                aclosing(follow(self._store, self._flight, start)) as chunks,
                aclosing(self._pieces(chunks, start, end)) as pieces,
            ):
                try:
                    async for piece in pieces:
                        yield piece
                    return
                except _Unsent as unsent:
                    if not left:
                        raise unsent.error from None
                    log.info("read.again", url=self._flight.url, detail=str(unsent.error))

    @asynccontextmanager
    async def read_files(self, start: int, end: int) -> AsyncIterator[AsyncIterator[Piece]]:
        async with self.read(start, end) as pieces:  # cut-through: bytes as they are verified
            yield pieces

    async def _pieces(
        self, chunks: AsyncIterator[bytes], start: int, end: int
    ) -> AsyncGenerator[bytes, None]:
        flight = self._flight
        reached = start
        if reached >= end:
            return
        handed = False
        async for chunk in chunks:
            restarts = flight.restarts  # of the writer this chunk was read from
            piece = _cut(chunk, reached, end)
            if not piece:
                continue
            reached += len(piece)
            if reached >= self.info.size or (self._hold_back and reached >= end):
                # The object's last bytes only once the flight verified and stored it all.
                await flight.wait()
                if flight.restarts != restarts:
                    # What was verified is the object fetched again, not these bytes.
                    error = FetchRestartedError(
                        f"{flight.url}: the agent dropped what it sent ({flight.restart_why}) "
                        "and fetched it again: ask again"
                    )
                    raise _Unsent(error) if self._hold_back and not handed else error
            yield piece
            handed = True
            if reached >= end:
                return
        if reached < end:
            await flight.wait()
            raise OriginUnreachableError(
                f"{flight.url}: the object ended at byte {reached}, {self.info.size} announced"
            )


# A reader's pieces: its bytes, or descriptors of its chunk files (both sized by ``len``).
_Piece = TypeVar("_Piece", bytes, HeldChunk)


def _bytes_of(reader: ObjectReader) -> AsyncIterator[bytes]:
    return reader


async def follow(
    store: Store,
    flight: Flight,
    offset: int,
    pieces: Callable[[ObjectReader], AsyncIterator[_Piece]] = _bytes_of,  # type: ignore[assignment]
) -> AsyncGenerator[_Piece, None]:
    """The object's bytes (or ``pieces``) from ``offset``, across writer hand-overs, until
    complete.

    With a wanted digest the object is read *by that digest* (the store follows a writer
    expecting it): an older object still stored under the URL is never handed over.

    A hand-over keeps the chunks (the next writer resumes after them); a restart drops them
    (``flight.restart_why``): bytes handed out before it are void, so the read ends with
    :class:`FetchRestartedError` rather than go on in the new writer.
    """
    key: str | bytes = flight.sha256 if flight.sha256 is not None else flight.url
    delivered = offset
    restarts = flight.restarts
    while True:
        if flight.restarts != restarts:
            if delivered > offset:
                raise FetchRestartedError(
                    f"{flight.url}: the agent dropped the first {delivered} bytes it sent "
                    f"({flight.restart_why}) and fetches the object again: ask again"
                )
            restarts = flight.restarts  # nothing handed out yet: follow the new writer
        changed = flight.changed
        try:
            async with store.open_reader(key, offset=delivered) as reader:
                if flight.size is None:
                    flight.size = reader.size
                async for chunk in pieces(reader):
                    delivered += len(chunk)
                    yield chunk
            return
        except NotInStoreError:
            pass
        except FrumitcacheError:
            # A reader following a failed fetch only knows "the writer failed"; the fetch's
            # own error (digest mismatch, origin status) is the honest one.
            if flight.error is not None:
                raise flight.error from None
            raise
        # The writer went away: finished, failed, or handed over to another flight stage.
        if store.lookup(key) is not None:
            continue
        if flight.done.is_set():
            raise flight.error or NotInStoreError(f"{flight.url} vanished while being read")
        await wait_any(changed, flight.done)
