"""Fetching chunks and whole objects from site holders, in order, with cut-through.

:class:`ChunkFetcher` picks the transport per chunk: peer HTTP up to ``small_chunk_bytes``
(one request, no connect tick), libtorrent above it (the swarm trades pieces), and peer HTTP
again if the swarm stalls. :func:`fetch_object` takes the chunks of an object as they become
known (a channel: the seeder may still be fetching the tail from the origin), fetches several
at once, and hands each to ``sink`` in order the moment it and all before it are stored — so
a reader receives chunk 0 while later chunks are in flight or not yet published.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass

import trio

from frumitcache.config import SwarmConfig
from frumitcache.errors import DigestMismatchError, FrumitcacheError, PeerError
from frumitcache.swarm._merkle import MerkleTree
from frumitcache.swarm._peer_client import HttpChunkClient
from frumitcache.swarm._peer_wire import MAX_TREES, Address
from frumitcache.swarm._session import Swarm
from frumitcache.swarm._storeapi import ChunkStore

#: Trees asked for or fetched ahead and not used yet, kept at most (about 1 KB each).
_TREES_KEPT = 256


@contextlib.asynccontextmanager
async def _nursery() -> AsyncIterator[trio.Nursery]:
    """A strict nursery whose failure is raised as our own error when it is one of ours.

    Callers catch PeerError and friends; trio (since 0.25) would hand them an ExceptionGroup.
    """
    try:
        async with trio.open_nursery(strict_exception_groups=True) as nursery:
            yield nursery
    except BaseExceptionGroup as group:
        ours, rest = group.split(FrumitcacheError)
        if ours is None or rest is not None:
            raise
        first: BaseException = ours
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise first from None


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of a manifest: its SHA-256, length and, when known, v2 pieces root.

    Without the root the fetcher asks a holder for the chunk's tree over peer HTTP (safe: the
    downloaded bytes are checked against ``digest`` whatever the tree said).
    """

    digest: bytes
    size: int
    root: bytes | None = None


@dataclass(frozen=True, slots=True)
class Holder:
    """A site member that holds (or is fetching) a chunk: its address and two ports.

    ``seeder`` marks the site's seeder, whose LAN port is the scarce resource: each fetcher
    dials it only for the chunks assigned to it (:func:`assigned_fetcher`) or when a chunk
    stalls, so the seeder sends about one copy and the fetchers trade the rest.
    """

    address: str
    peer_port: int
    swarm_port: int
    seeder: bool = False


def _spread(digest: bytes, n: int) -> int:
    """A chunk's turn among ``n`` (its first four bytes modulo ``n``: the same on every node)."""
    return int.from_bytes(digest[:4], "big") % n


def assigned_fetcher(digest: bytes, candidates: Sequence[Holder]) -> Holder:
    """The one fetcher that pulls chunk ``digest`` from the seeder (same answer on every node).

    libtorrent's own super-seeding reveals the first piece to a peer only after a 10 s timer
    (measured: 11.5 s for a 4 MiB chunk), which is ruinous for per-chunk torrents; this
    assignment gets the same effect at chunk level with no delay.
    """
    ordered = sorted(candidates, key=lambda h: (h.address, h.swarm_port))
    return ordered[_spread(digest, len(ordered))]


@dataclass(frozen=True, slots=True)
class ChunkOffer:
    """Chunk ``index`` of an object is available from ``holders``."""

    index: int
    chunk: ChunkRef
    holders: tuple[Holder, ...]
    #: No one is downloading the chunk (a warm pull): take it from a holder over peer HTTP
    #: rather than pay a libtorrent connect tick for a swarm with nobody to trade with.
    direct: bool = False


class ChunkFetcher:
    """Brings single chunks into the store over the right transport."""

    def __init__(
        self,
        store: ChunkStore,
        http: HttpChunkClient,
        swarm: Swarm | None = None,
        *,
        small_chunk_bytes: int,
        me: Holder | None = None,
        seeder_once: bool = True,
        seeder_grace: float = 3.0,
        stall_timeout: float = 20.0,
    ) -> None:
        self._store = store
        self._http = http
        self._swarm = swarm
        self._small = small_chunk_bytes
        self._me = me
        self._seeder_once = seeder_once
        self._grace = seeder_grace
        self._stall = stall_timeout
        #: Chunks (digest → size) whose trees the next batch asks for (:meth:`want_trees`).
        self._tree_wanted: dict[bytes, int] = {}
        #: Trees fetched in a batch and not used yet, with the holder that sent them.
        self._tree_cache: dict[bytes, tuple[MerkleTree, Address]] = {}
        #: Set when the batch carrying a chunk's tree has been answered (or failed).
        self._tree_pending: dict[bytes, trio.Event] = {}
        #: Chunks being fetched now, set when that fetch ends (stored or failed).
        self._inflight: dict[bytes, trio.Event] = {}

    @classmethod
    def from_config(
        cls,
        store: ChunkStore,
        http: HttpChunkClient,
        swarm: Swarm | None,
        config: SwarmConfig,
        *,
        me: Holder | None,
    ) -> ChunkFetcher:
        return cls(
            store,
            http,
            swarm,
            small_chunk_bytes=config.small_chunk_bytes,
            me=me,
            seeder_once=config.super_seeding,
            seeder_grace=config.seeder_grace_s,
            stall_timeout=config.stall_timeout_s,
        )

    @property
    def me(self) -> Holder | None:
        return self._me

    @property
    def bad_holders(self) -> set[str]:
        return self._http.bad_holders

    def want_trees(self, chunks: Iterable[ChunkRef]) -> None:
        """Chunks about to be fetched: the first libtorrent fetch asks a holder for all
        their trees in one request instead of one request per chunk."""
        for chunk in chunks:
            if chunk.size > self._small and chunk.digest not in self._tree_cache:
                self._tree_wanted[chunk.digest] = chunk.size
        while len(self._tree_wanted) > _TREES_KEPT:
            self._tree_wanted.pop(next(iter(self._tree_wanted)))

    async def _tree(self, chunk: ChunkRef, holders: Sequence[Holder]) -> tuple[MerkleTree, Address]:
        """The chunk's tree: from a batch (asked here for every wanted chunk, or already
        on its way), else with one request of its own."""
        self._tree_wanted.pop(chunk.digest, None)
        pending = self._tree_pending.get(chunk.digest)
        if pending is not None:
            await pending.wait()
        elif chunk.digest not in self._tree_cache and self._tree_wanted and holders:
            await self._batch_trees(chunk, holders)
        hit = self._tree_cache.pop(chunk.digest, None)
        if hit is not None and (chunk.root is None or hit[0].root == chunk.root):
            return hit
        ordered = sorted(holders, key=lambda h: h.seeder)
        return await self._http.fetch_tree(
            chunk.digest, chunk.size, [(h.address, h.peer_port) for h in ordered], chunk.root
        )

    async def _batch_trees(self, chunk: ChunkRef, holders: Sequence[Holder]) -> None:
        # The seeder holds every chunk of a complete object (a fellow fetcher may not yet).
        holder = next((h for h in holders if h.seeder), holders[0])
        ask = {chunk.digest: chunk.size}
        for digest in list(self._tree_wanted)[: MAX_TREES - 1]:
            if not self._store.has_chunk(digest):
                ask[digest] = self._tree_wanted[digest]
            del self._tree_wanted[digest]
        done = trio.Event()
        for digest in ask:
            self._tree_pending[digest] = done
        try:
            got = await self._http.fetch_trees(ask, (holder.address, holder.peer_port))
            for digest, tree in got.items():
                self._tree_cache[digest] = (tree, (holder.address, holder.peer_port))
            while len(self._tree_cache) > _TREES_KEPT:
                self._tree_cache.pop(next(iter(self._tree_cache)))
        finally:
            for digest in ask:
                if self._tree_pending.get(digest) is done:
                    del self._tree_pending[digest]
            done.set()

    def add_holders(self, chunk: ChunkRef, holders: Sequence[Holder]) -> None:
        if self._swarm is not None:
            self._swarm.add_holders(chunk.digest, [(h.address, h.swarm_port) for h in holders])

    async def fetch(
        self, chunk: ChunkRef, holders: Sequence[Holder], *, direct: bool = False
    ) -> None:
        """Bring ``chunk`` into the store (at once if it is there). One fetch per digest at a
        time: an object whose chunk list repeats a digest (zeros in a disk image) has it at
        neighbouring indexes, which ``parallel_chunks`` workers would otherwise each pull
        whole over peer HTTP (2.4x the distinct bytes for a warm member, measured). A caller
        that waited on a fetch that failed tries itself, with its own holders."""
        while not self._store.has_chunk(chunk.digest):
            running = self._inflight.get(chunk.digest)
            if running is None:
                done = self._inflight[chunk.digest] = trio.Event()
                try:
                    await self._fetch(chunk, holders, direct=direct)
                finally:
                    del self._inflight[chunk.digest]
                    done.set()
                return
            await running.wait()

    async def _fetch(self, chunk: ChunkRef, holders: Sequence[Holder], *, direct: bool) -> None:
        bad = self._http.bad_holders | (self._swarm.banned if self._swarm else frozenset())
        usable = [h for h in holders if h.address not in bad]
        if direct and usable:
            # Spread chunks over the holders (same digest, same first choice), the seeder last.
            members = sorted((h for h in usable if not h.seeder), key=lambda h: h.address)
            turn = _spread(chunk.digest, len(members)) if members else 0
            ordered = members[turn:] + members[:turn] + [h for h in usable if h.seeder]
            with contextlib.suppress(PeerError):
                await self._http.fetch(
                    chunk.digest, chunk.size, [(h.address, h.peer_port) for h in ordered]
                )
                if self._swarm is not None and chunk.size > self._small:
                    await self._swarm.seed(chunk.digest, verified=True)
                return
        if self._swarm is not None and chunk.size > self._small:
            if self._first_replica(chunk, usable):
                # This node is the one fetcher that takes the chunk from the seeder: one HTTP
                # GET (no libtorrent connect tick) puts a first replica in the site within a
                # LAN chunk-time, which is what a seeder's death can cost; the others then
                # trade it through the swarm from here.
                seeders = [(h.address, h.peer_port) for h in usable if h.seeder]
                with contextlib.suppress(PeerError):
                    await self._http.fetch(chunk.digest, chunk.size, seeders)
                    await self._swarm.seed(chunk.digest, verified=True)
                    return
            try:
                await self._fetch_swarm(self._swarm, chunk, usable)
                return
            except PeerError:
                pass  # the swarm stalled: try the holders one by one over HTTP
        # Over HTTP the seeder is asked last: a fellow fetcher may already hold the chunk.
        ordered = sorted(usable, key=lambda h: h.seeder)
        await self._http.fetch(
            chunk.digest, chunk.size, [(h.address, h.peer_port) for h in ordered]
        )
        if self._swarm is not None and chunk.size > self._small:
            # A large chunk that came over HTTP (the swarm stalled) is still served by torrent.
            await self._swarm.seed(chunk.digest, verified=True)

    def assigned_here(self, digest: bytes, members: Sequence[Holder]) -> bool:
        """Is this node the one among itself and ``members`` (the seeder left out) assigned to
        take chunk ``digest`` from the seeder? True when it has no fellow member."""
        others = [h for h in members if not h.seeder]
        return (
            self._me is None
            or not others
            or assigned_fetcher(digest, [self._me, *others]) == self._me
        )

    def _first_replica(self, chunk: ChunkRef, holders: Sequence[Holder]) -> bool:
        """Is this node the fetcher assigned to take ``chunk`` from the seeder? The seeder's
        only fellow (a 2-Pi site) always is: with nobody to trade with, a libtorrent dial only
        adds its connect tick (it trailed a 100 Mbit seeder by 1-3 chunks, which a seeder's
        death made the site fetch again)."""
        if not self._seeder_once or self._me is None or not any(h.seeder for h in holders):
            return False
        others = [h for h in holders if not h.seeder]
        return assigned_fetcher(chunk.digest, [self._me, *others]) == self._me

    async def _fetch_swarm(self, swarm: Swarm, chunk: ChunkRef, holders: list[Holder]) -> None:
        seeders = [h for h in holders if h.seeder]
        others = [h for h in holders if not h.seeder]
        first = others
        if (
            not self._seeder_once
            or self._me is None
            or not others
            or assigned_fetcher(chunk.digest, [self._me, *others]) == self._me
        ):
            first = holders
        late = [h for h in seeders if h not in first]

        def addresses(hs: Sequence[Holder]) -> list[tuple[str, int]]:
            return [(h.address, h.swarm_port) for h in hs]

        async with _nursery() as nursery:
            if late:
                # The assigned fetcher may be slow or dead: once the chunk has made no
                # progress for a grace period, anyone may dial the seeder for it.
                # The download's wait loop records its progress once a second; sleeping
                # to the deadline it implies asks libtorrent nothing.
                async def widen() -> None:
                    start = trio.current_time()
                    while True:
                        since = max(start, swarm.progressed_at(chunk.digest) or start)
                        if trio.current_time() - since >= self._grace:
                            break
                        await trio.sleep_until(since + self._grace)
                    swarm.add_holders(chunk.digest, addresses(late))

                nursery.start_soon(widen)
            # Root and piece layer from a holder: the leecher then needs no hash requests.
            try:
                tree, source = await self._tree(chunk, holders)
                root, layer = tree.root, tree.piece_layer
            except PeerError:
                if chunk.root is None:
                    raise
                # Known root: libtorrent fetches the piece layer from the swarm instead.
                root, layer, source = chunk.root, None, None
            try:
                await swarm.fetch_chunk(
                    chunk.digest,
                    chunk.size,
                    addresses(first),
                    root=root,
                    piece_layer=layer,
                    stall_timeout=self._stall,
                )
            except DigestMismatchError:
                # The tree was a lie (its root was not the chunk's): drop whoever served it.
                if source is not None:
                    self._http.penalise(source[0])
                raise
            nursery.cancel_scope.cancel()


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

    async def one(offer: ChunkOffer) -> None:
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
    async with _nursery() as nursery:
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
                    queue_send.send_nowait(offer)
        async with progress:
            closed = True
            progress.notify_all()
    if len(stored) != total:
        raise PeerError(f"object incomplete: {len(stored)} of {total} chunks")
    return total
