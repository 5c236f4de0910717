"""Fetching a whole object from site holders, in index order, with cut-through.

:func:`fetch_object` takes the chunks of an object as they become known (a channel: the
seeder may still be fetching the tail from the origin), fetches several at once with a
:class:`~._fetch.ChunkFetcher`, and hands each to ``sink`` in order the moment it and all
before it are stored — so a reader receives chunk 0 while later chunks are in flight or not
yet published.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

from frumitcache.errors import DigestMismatchError, PeerError
from frumitcache.swarm._fetch import ChunkFetcher, ChunkRef, Holder, strict_nursery


@dataclass(frozen=True, slots=True)
class ChunkOffer:
    """Chunk ``index`` of an object is available from ``holders``."""

    index: int
    chunk: ChunkRef
    holders: tuple[Holder, ...]
    #: No one is downloading the chunk (a warm pull): take it from a holder over peer HTTP
    #: rather than pay a libtorrent connect tick for a swarm with nobody to trade with.
    direct: bool = False


def _with_ready(
    first: ChunkOffer, offers: trio.MemoryReceiveChannel[ChunkOffer]
) -> list[ChunkOffer]:
    """``first`` and the offers already waiting in the channel behind it."""
    ready = [first]
    while True:
        try:
            ready.append(offers.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return ready


async def fetch_object(
    fetcher: ChunkFetcher,
    offers: trio.MemoryReceiveChannel[ChunkOffer],
    sink: Callable[[int, ChunkRef], Awaitable[None]],
    *,
    parallel: int = 8,
    retries: int = 3,
) -> int:
    """Fetch every offered chunk; call ``sink(index, chunk)`` in index order once stored.

    ``offers`` is closed by the producer after the last chunk. An offer for an index already
    seen adds holders. Returns the number of chunks. A chunk that fails ``retries`` times
    raises :class:`PeerError` (or :class:`DigestMismatchError`).
    """
    # ``parallel`` workers take the offers in the order they came (index order). One task per
    # offer behind a limiter let trio's scheduler pick the start order, which is a batch run
    # backwards half the time: chunk 0 of 12,800 came last, so nothing reached the writer (or
    # a reader cutting through) until the whole object was in. In a warm herd every member
    # thus works on the same few chunks, each one's assigned fetcher among them: members
    # started at their own points were slower (bench/README.md, issue 11's warm "regression").
    queue_send, queue = trio.open_memory_channel[ChunkOffer](math.inf)
    stored: dict[int, ChunkRef] = {}
    known: dict[int, ChunkOffer] = {}
    progress = trio.Condition()
    next_index = 0

    queued: list[bytes] = []  # offers this call noted in fetcher._queued and not yet fetched

    async def one(offer: ChunkOffer) -> None:
        queued.remove(offer.chunk.digest)
        fetcher.note_queued(offer.chunk.digest, -1)
        last: Exception | None = None
        for attempt in range(retries):
            try:
                now = known[offer.index]
                await fetcher.fetch(offer.chunk, now.holders, direct=now.direct)
                break
            except (PeerError, DigestMismatchError) as exc:
                last = exc
            await trio.sleep(min(2.0, 0.2 * math.pow(2, attempt)))
        else:
            assert last is not None
            raise last
        async with progress:
            stored[offer.index] = offer.chunk
            progress.notify_all()

    async def worker() -> None:
        async for offer in queue:
            await one(offer)

    async def deliver() -> None:
        nonlocal next_index
        while True:
            async with progress:
                while next_index not in stored:
                    if closed and next_index >= total:
                        return
                    if closed and next_index not in known:
                        raise PeerError(f"object incomplete: chunk {next_index} never offered")
                    await progress.wait()
                chunk = stored[next_index]
            await sink(next_index, chunk)
            next_index += 1

    closed = False
    total = 0
    try:
        async with strict_nursery() as nursery:
            nursery.start_soon(deliver)
            for _ in range(max(1, parallel)):
                nursery.start_soon(worker)
            async with offers, queue_send:
                async for first in offers:
                    new: list[ChunkOffer] = []
                    for offer in _with_ready(first, offers):
                        if offer.index in known:
                            was = known[offer.index]
                            merged = tuple(dict.fromkeys((*was.holders, *offer.holders)))
                            known[offer.index] = ChunkOffer(
                                offer.index, offer.chunk, merged, direct=was.direct and offer.direct
                            )
                            fetcher.add_holders(offer.chunk, offer.holders)
                            continue
                        known[offer.index] = offer
                        total = max(total, offer.index + 1)
                        new.append(offer)
                    # Every offer already at hand (a complete object: all of them) before the first
                    # fetch starts, so that one request brings all their trees.
                    fetcher.want_trees([offer.chunk for offer in new if not offer.direct])
                    for offer in new:
                        queued.append(offer.chunk.digest)
                        fetcher.note_queued(offer.chunk.digest, 1)
                        queue_send.send_nowait(offer)
            async with progress:
                closed = True
                progress.notify_all()
    finally:
        # Offers never started (a failure or a cancel): fellows asking must not wait on them.
        for digest in queued:
            fetcher.note_queued(digest, -1)
    if len(stored) != total:
        raise PeerError(f"object incomplete: {len(stored)} of {total} chunks")
    return total
