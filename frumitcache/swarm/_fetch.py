"""Fetching single chunks from site holders over the right transport.

:class:`ChunkFetcher` picks the transport per chunk: peer HTTP up to ``small_chunk_bytes``
(one request, no connect tick), libtorrent above it (the swarm trades pieces), and peer HTTP
again if the swarm stalls. Each chunk of a complete object is taken from the seeder by one
assigned fetcher (:func:`assigned_fetcher`); the others wait for it to trade the chunk on
(``_widen``), except for a fellow known to fetch nothing and for an object this node pulls
alone (:meth:`ChunkFetcher.pull_alone`): then they take it from the seeder themselves. Whole
objects: :mod:`._object`.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass

import trio

from frumitcache.config import SwarmConfig
from frumitcache.errors import DigestMismatchError, FrumitcacheError, PeerError
from frumitcache.swarm._merkle import MerkleTree
from frumitcache.swarm._peer_client import HttpChunkClient
from frumitcache.swarm._peer_wire import MAX_TREES, STATE_FETCHING, STATE_IDLE, Address
from frumitcache.swarm._session import Swarm
from frumitcache.swarm._storeapi import ChunkStore

#: Trees asked for or fetched ahead and not used yet, kept at most (about 1 KB each).
_TREES_KEPT = 256
#: How often a member waiting past the short grace asks the assigned fetcher again.
_STATE_EVERY_S = 2.0
#: A fellow that said it fetches nothing at all (or was gone or silent) is not waited for
#: again for this long: a lone puller in a site of idle members pays one grace, not one per
#: chunk assigned to them.
_IDLE_MEMORY_S = 10.0
#: Chunks taken from the seeder at once for fellows that will not trade them on (idle, or this
#: node pulls alone): two keep a LAN link busy, and a herd member that asks late finds at most
#: two of its chunks copied twice.
_FOR_IDLE_AT_ONCE = 2


class _TakeDirect(PeerError):
    """A chunk waiting on its fellows turns out to be pulled alone: take it from the seeder."""


@contextlib.asynccontextmanager
async def strict_nursery() -> AsyncIterator[trio.Nursery]:
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
        assigned_grace: float = 20.0,
        stall_timeout: float = 20.0,
    ) -> None:
        self._store = store
        self._http = http
        self._swarm = swarm
        self._small = small_chunk_bytes
        self._me = me
        self._seeder_once = seeder_once
        self._grace = seeder_grace
        self._assigned_grace = max(seeder_grace, assigned_grace)
        self._stall = stall_timeout
        #: Chunks (digest → size) whose trees the next batch asks for (:meth:`want_trees`).
        self._tree_wanted: dict[bytes, int] = {}
        #: Trees fetched in a batch and not used yet, with the holder that sent them.
        self._tree_cache: dict[bytes, tuple[MerkleTree, Address]] = {}
        #: Set when the batch carrying a chunk's tree has been answered (or failed).
        self._tree_pending: dict[bytes, trio.Event] = {}
        #: Chunks being fetched now, set when that fetch ends (stored or failed).
        self._inflight: dict[bytes, trio.Event] = {}
        #: Chunks offered to a running :func:`fetch_object` and not fetched yet (how many
        #: offers): this node will fetch them as soon as a worker is free.
        self._queued: dict[bytes, int] = {}
        #: Fellows (by address) that said they fetch nothing at all, or gave no answer: when.
        self._idle: dict[str, float] = {}
        #: Chunks of objects this node pulls alone (the seeder said so): no fellow trades them.
        self._alone: Counter[bytes] = Counter()
        self._alone_news = trio.Event()  # set (and replaced) when chunks join ``_alone``
        self._for_idle = trio.Semaphore(_FOR_IDLE_AT_ONCE)

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
            assigned_grace=config.assigned_grace_s,
            stall_timeout=config.stall_timeout_s,
        )

    def is_fetching(self, digest: bytes) -> bool:
        """Is a fetch of chunk ``digest`` running or queued here (the peer port's ``/state``)?"""
        return digest in self._inflight or digest in self._queued

    def is_busy(self) -> bool:
        """Is any chunk being fetched, or queued for a worker, here now?"""
        return bool(self._inflight or self._queued)

    def note_queued(self, digest: bytes, n: int) -> None:
        """``n`` more (or fewer) offers of chunk ``digest`` wait for a worker here."""
        left = self._queued.get(digest, 0) + n
        if left > 0:
            self._queued[digest] = left
        else:
            self._queued.pop(digest, None)

    def pull_alone(self, digests: Iterable[bytes], alone: bool) -> None:
        """This node pulls the object of ``digests`` alone (``True``), or no longer: its chunks
        that wait for a fellow are taken from the seeder instead, at most
        ``_FOR_IDLE_AT_ONCE`` at a time. Calls pair up (one ``False`` per ``True``)."""
        for digest in set(digests):
            self._alone[digest] += 1 if alone else -1
            if self._alone[digest] <= 0:
                del self._alone[digest]
        if alone:
            self._alone_news.set()
            self._alone_news = trio.Event()

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
            # This node is the one fetcher that takes the chunk from the seeder: one HTTP GET
            # (no libtorrent connect tick) puts a first replica in the site within a LAN
            # chunk-time, which is what a seeder's death can cost; the others then trade it
            # through the swarm from here.
            if self._first_replica(chunk, usable) and await self._from_seeder(chunk, usable):
                return
            if self._assigned_idle(chunk, usable) and await self._for_idle_fellow(chunk, usable):
                return
            try:
                await self._fetch_swarm(self._swarm, chunk, usable)
                return
            except _TakeDirect:
                if await self._for_idle_fellow(chunk, usable):
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

    async def _from_seeder(self, chunk: ChunkRef, holders: Sequence[Holder]) -> bool:
        """Take ``chunk`` from the seeder over peer HTTP and seed it on; ``False`` if that
        failed (the caller goes on another way)."""
        assert self._swarm is not None
        seeders = [(h.address, h.peer_port) for h in holders if h.seeder]
        try:
            await self._http.fetch(chunk.digest, chunk.size, seeders)
            await self._swarm.seed(chunk.digest, verified=True)
        except PeerError:
            return False
        return True

    async def _for_idle_fellow(self, chunk: ChunkRef, holders: Sequence[Holder]) -> bool:
        """:meth:`_from_seeder` for a chunk whose assigned fellow will not trade it on."""
        async with self._for_idle:
            if self._store.has_chunk(chunk.digest):
                return True
            return await self._from_seeder(chunk, holders)

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
        return self._assigned(chunk, holders) == self._me

    def _assigned(self, chunk: ChunkRef, holders: Sequence[Holder]) -> Holder | None:
        """The fetcher assigned ``chunk`` among this node and the holders that are not the
        seeder (None when this node has no site identity)."""
        if self._me is None:
            return None
        return assigned_fetcher(chunk.digest, [self._me, *(h for h in holders if not h.seeder)])

    def _assigned_idle(self, chunk: ChunkRef, holders: Sequence[Holder]) -> bool:
        """Did the fellow assigned ``chunk`` say lately that it fetches nothing at all (or was
        it gone or silent)? Then nobody will trade the chunk to us: take it from the seeder as
        its assigned fetcher would (a lone puller in a site of idle members waits one grace,
        not one per chunk)."""
        if not self._seeder_once or not any(h.seeder for h in holders):
            return False
        assigned = self._assigned(chunk, holders)
        if assigned is None or assigned == self._me:
            return False
        return chunk.digest in self._alone or self._known_idle(assigned.address)

    def _known_idle(self, address: str) -> bool:
        at = self._idle.get(address)
        return at is not None and trio.current_time() - at < _IDLE_MEMORY_S

    async def _widen(
        self, swarm: Swarm, digest: bytes, assigned: Holder | None, late: list[tuple[str, int]]
    ) -> None:
        """Once ``digest`` has made no progress for ``seeder_grace_s``, let anyone dial the
        seeder for it, unless its assigned fetcher says it is fetching it: then wait on, up to
        ``assigned_grace_s`` without progress. Its copy from a seeder serving the whole
        site's first round takes seconds, and widening then made the seeder's port carry
        chunks twice (48-86 MiB more for 64 MiB in a warm 8-Pi herd, 2026-12-04); an assigned
        member that is idle, busy with other chunks, gone or silent costs the short grace."""
        start = trio.current_time()
        while True:
            if digest in self._alone:  # no fellow pulls it: nobody will trade it to us
                raise _TakeDirect(f"chunk {digest.hex()}: pulled alone")
            since = max(start, swarm.progressed_at(digest) or start)
            quiet = trio.current_time() - since
            if quiet >= self._assigned_grace:
                break
            if assigned is not None and self._known_idle(assigned.address):
                break  # it said so for another chunk lately: nobody will trade this one to us
            if quiet < self._grace:
                # The download's wait loop records its progress once a second; sleeping to
                # the deadline it implies asks libtorrent nothing.
                await self._nap_until(since + self._grace)
                continue
            if assigned is None:
                break
            state = await self._http.chunk_state((assigned.address, assigned.peer_port), digest)
            if state is None or state == STATE_IDLE:
                self._idle[assigned.address] = trio.current_time()
                break
            self._idle.pop(assigned.address, None)
            if state != STATE_FETCHING:
                break  # "absent": busy with other chunks (or not offered this one yet)
            await self._nap_until(
                min(trio.current_time() + _STATE_EVERY_S, since + self._assigned_grace)
            )
        swarm.add_holders(digest, late)

    async def _nap_until(self, deadline: float) -> None:
        """Until ``deadline``, or until chunks are found to be pulled alone."""
        with trio.move_on_at(deadline):
            await self._alone_news.wait()

    async def _fetch_swarm(self, swarm: Swarm, chunk: ChunkRef, holders: list[Holder]) -> None:
        seeders = [h for h in holders if h.seeder]
        assigned = self._assigned(chunk, holders)
        # The assigned fetcher (or a node with no fellow, or no site identity) dials everyone;
        # the others dial their fellows and wait for the chunk to be traded on (``_widen``).
        first = [h for h in holders if not h.seeder]
        if not self._seeder_once or assigned == self._me:
            first = holders
        late = [h for h in seeders if h not in first]

        def addresses(hs: Sequence[Holder]) -> list[tuple[str, int]]:
            return [(h.address, h.swarm_port) for h in hs]

        async with strict_nursery() as nursery:
            if late:
                nursery.start_soon(self._widen, swarm, chunk.digest, assigned, addresses(late))
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
