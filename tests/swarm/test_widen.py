"""When a member may dial the seeder for a chunk assigned to a fellow member (the widen).

Each chunk is assigned to one fetcher, who alone takes it from the seeder; the others trade it
from that fetcher. A chunk that makes no progress is widened to the seeder after a grace:
the short one (``seeder_grace_s``), unless the assigned fetcher, asked over the peer port, says
it is fetching the chunk: then up to the long one (``assigned_grace_s``), asking again every
2 s, since its copy from a busy seeder takes seconds. An assigned member that is idle, holds
the chunk whole, has died or does not answer costs the short grace. Fakes for the store, peer
HTTP and libtorrent; time is trio's mock clock. Through real agents:
tests/agent/test_assigned_fetcher.py and tests/swarm/test_peer_state.py."""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import trio
import trio.testing

from frumitcache.swarm import (
    ChunkFetcher,
    ChunkOffer,
    ChunkRef,
    Holder,
    assigned_fetcher,
    fetch_object,
)

ME = Holder("127.0.0.2", 3144, 3145)
FELLOWS = (Holder("127.0.0.3", 3144, 3145), Holder("127.0.0.4", 3144, 3145))
SEEDER = Holder("127.0.0.1", 3144, 3145, seeder=True)
SIZE = 4 << 20


def _chunk_assigned_to(holder: Holder, skip: int = 0) -> ChunkRef:
    """A chunk whose assigned fetcher among ME and FELLOWS is ``holder`` (the ``skip``-th)."""
    for i in range(1000):
        digest = hashlib.sha256(b"chunk %d" % i).digest()
        if assigned_fetcher(digest, [ME, *FELLOWS]) == holder:
            if skip == 0:
                return ChunkRef(digest, SIZE)
            skip -= 1
    raise AssertionError("no digest assigned to the holder in 1000 tries")


class _Store:
    def __init__(self) -> None:
        self.chunks: set[bytes] = set()

    def has_chunk(self, digest: bytes) -> bool:
        return digest in self.chunks


@dataclass
class _Tree:
    root: bytes
    piece_layer: bytes


class _Http:
    """Peer HTTP whose ``/state`` answers come from ``state(address)``."""

    def __init__(self, state: Callable[[str], bytes | None]) -> None:
        self.bad_holders: set[str] = set()
        self.state = state
        self.asked: list[tuple[float, tuple[str, int], bytes]] = []
        self.fetched: list[tuple[bytes, list[tuple[str, int]]]] = []
        self.store: _Store | None = None
        #: When set, a chunk fetch over HTTP waits for it.
        self.gate: trio.Event | None = None

    async def fetch(self, digest: bytes, size: int, holders: Sequence[tuple[str, int]]) -> None:
        self.fetched.append((digest, list(holders)))
        if self.gate is not None:
            await self.gate.wait()
        if self.store is not None:
            self.store.chunks.add(digest)

    async def chunk_state(self, holder: tuple[str, int], digest: bytes) -> bytes | None:
        self.asked.append((trio.current_time(), holder, digest))
        return self.state(holder[0])

    async def fetch_tree(
        self, digest: bytes, size: int, holders: Sequence[tuple[str, int]], root: bytes | None
    ) -> tuple[_Tree, tuple[str, int]]:
        return _Tree(digest, b""), holders[0]


class _Swarm:
    """A chunk that never progresses until someone adds the seeder to its peers."""

    banned: frozenset[str] = frozenset()

    def __init__(self, store: _Store, progressed: Callable[[], float | None]) -> None:
        self.store = store
        self.progressed = progressed
        self.first: list[tuple[str, int]] = []
        self.widened_at: float | None = None
        self.widened_to: list[tuple[str, int]] = []
        self.seeded: list[bytes] = []
        self._seeder_added: dict[bytes, trio.Event] = {}

    async def seed(self, digest: bytes, *, verified: bool = False) -> None:
        self.seeded.append(digest)

    def progressed_at(self, digest: bytes) -> float | None:
        return self.progressed()

    def add_holders(self, digest: bytes, addresses: list[tuple[str, int]]) -> None:
        self.widened_at = trio.current_time()
        self.widened_to = addresses
        self._seeder_added.setdefault(digest, trio.Event()).set()

    async def fetch_chunk(
        self, digest: bytes, size: int, addresses: list[tuple[str, int]], **_: Any
    ) -> None:
        self.first = addresses
        await self._seeder_added.setdefault(digest, trio.Event()).wait()
        self.store.chunks.add(digest)


def fake_fetcher(
    store: _Store, http: _Http, swarm: _Swarm, *, seeder_grace: float, assigned_grace: float
) -> ChunkFetcher:
    """A fetcher over the fakes, as member ``ME``."""
    return ChunkFetcher(
        cast(Any, store),
        cast(Any, http),
        cast(Any, swarm),
        small_chunk_bytes=1 << 20,
        me=ME,
        seeder_grace=seeder_grace,
        assigned_grace=assigned_grace,
    )


def _same(state: bytes, address: str) -> bytes:
    return state


async def _widened_after(
    state: Callable[[str], bytes | None],
    progressed: Callable[[], float | None] = lambda: None,
) -> tuple[float, _Http]:
    store = _Store()
    swarm = _Swarm(store, progressed)
    http = _Http(state)
    http.store = store
    fetcher = fake_fetcher(store, http, swarm, seeder_grace=3.0, assigned_grace=20.0)
    chunk = _chunk_assigned_to(FELLOWS[0])
    start = trio.current_time()
    with trio.fail_after(60):
        await fetcher.fetch(chunk, [SEEDER, *FELLOWS])
    assert store.has_chunk(chunk.digest)
    # Until the widen, only the fellow members were dialled, never the seeder.
    assert (SEEDER.address, SEEDER.swarm_port) not in swarm.first
    assert swarm.widened_to == [(SEEDER.address, SEEDER.swarm_port)]
    assert swarm.widened_at is not None
    # Only the assigned fetcher is asked, on its peer port, about this chunk.
    assert {(h, d) for _, h, d in http.asked} <= {((FELLOWS[0].address, 3144), chunk.digest)}
    return swarm.widened_at - start, http


async def test_a_fetching_assigned_fetcher_gets_the_long_grace(autojump_clock: Any) -> None:
    waited, http = await _widened_after(lambda address: b"fetching")
    assert 20.0 <= waited < 21.0
    # Asked first at the short grace, then every 2 s: not once per scheduler round.
    times = [t - http.asked[0][0] for t, _, _ in http.asked]
    assert 8 <= len(times) <= 10
    assert http.asked[0][0] >= 3.0


async def test_an_idle_assigned_member_costs_the_short_grace(autojump_clock: Any) -> None:
    for state in (b"idle", b"absent"):  # fetching nothing, or other chunks only
        waited, http = await _widened_after(functools.partial(_same, state))
        assert 3.0 <= waited < 3.5
        assert len(http.asked) == 1


async def test_a_dead_or_silent_assigned_member_costs_the_short_grace(
    autojump_clock: Any,
) -> None:
    waited, _ = await _widened_after(lambda address: None)
    assert 3.0 <= waited < 3.5


async def test_an_assigned_member_holding_the_chunk_whole_does_not_hold_us(
    autojump_clock: Any,
) -> None:
    # It holds the chunk, yet nothing reached us for the grace: something between us is wrong.
    waited, _ = await _widened_after(lambda address: b"held")
    assert 3.0 <= waited < 3.5


async def test_a_garbled_answer_is_not_fetching(autojump_clock: Any) -> None:
    waited, _ = await _widened_after(lambda address: b"\xff" * 16)
    assert 3.0 <= waited < 3.5


async def test_an_assigned_fetcher_dying_mid_wait_widens_at_the_next_ask(
    autojump_clock: Any,
) -> None:
    start = trio.current_time()

    def state(address: str) -> bytes | None:
        return b"fetching" if trio.current_time() - start < 8.0 else None  # gone at 8 s

    waited, _ = await _widened_after(state)
    assert 8.0 <= waited <= 10.5


async def test_progress_restarts_the_grace(autojump_clock: Any) -> None:
    start = trio.current_time()

    def progressed() -> float | None:
        # Progress recorded until 30 s in, then none: the graces count from there.
        return min(trio.current_time(), start + 30.0)

    waited, http = await _widened_after(lambda address: b"fetching", progressed)
    assert 50.0 <= waited < 51.0
    assert min(t for t, _, _ in http.asked) - start >= 33.0  # nobody asked while it progressed


async def test_an_idle_fellow_is_not_waited_for_again(autojump_clock: Any) -> None:
    """A lone puller among idle members: the first chunk assigned to an idle fellow costs the
    grace and one question; the next ones are taken from the seeder over HTTP at once."""
    store = _Store()
    swarm = _Swarm(store, lambda: None)
    http = _Http(lambda address: b"idle")
    http.store = store
    fetcher = ChunkFetcher(
        cast(Any, store), cast(Any, http), cast(Any, swarm), small_chunk_bytes=1 << 20, me=ME
    )
    chunks = [_chunk_assigned_to(FELLOWS[0], skip=n) for n in range(4)]
    start = trio.current_time()
    with trio.fail_after(60):
        await fetcher.fetch(chunks[0], [SEEDER, *FELLOWS])
        assert 3.0 <= trio.current_time() - start < 3.5
        second = trio.current_time()
        await fetcher.fetch(chunks[1], [SEEDER, *FELLOWS])
        assert trio.current_time() - second < 0.1
        assert http.fetched == [(chunks[1].digest, [(SEEDER.address, SEEDER.peer_port)])]
        assert swarm.seeded == [chunks[1].digest]  # and traded on from here
        assert len(http.asked) == 1
        # The memory lapses: a fellow idle 10 s ago may be pulling now.
        await trio.sleep(10.0)
        third = trio.current_time()
        await fetcher.fetch(chunks[2], [SEEDER, *FELLOWS])
        assert 3.0 <= trio.current_time() - third < 3.5
        assert len(http.asked) == 2
        # A fellow busy with other chunks ("absent") is not remembered as idle: it may be
        # offered the next chunk any moment.
        http.state = lambda address: b"absent"
        await trio.sleep(11.0)
        fourth = trio.current_time()
        await fetcher.fetch(chunks[3], [SEEDER, *FELLOWS])
        assert 3.0 <= trio.current_time() - fourth < 3.5
        assert not fetcher._known_idle(FELLOWS[0].address)


async def test_queued_offers_count_as_fetching(autojump_clock: Any) -> None:
    """A fellow asking about a chunk this node was offered but has no free worker for yet is
    told "fetching"; once fetched, or once the pull is cancelled, it is not."""
    store = _Store()
    http = _Http(lambda address: None)
    http.store = store
    release = trio.Event()
    http.gate = release
    fetcher = ChunkFetcher(cast(Any, store), cast(Any, http), small_chunk_bytes=1 << 20, me=ME)
    refs = [ChunkRef(hashlib.sha256(b"q%d" % i).digest(), SIZE) for i in range(3)]
    send, receive = trio.open_memory_channel[ChunkOffer](len(refs))
    for i, ref in enumerate(refs):
        send.send_nowait(ChunkOffer(i, ref, (SEEDER,), direct=True))
    await send.aclose()

    async def sink(index: int, chunk: ChunkRef) -> None:
        pass

    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(fetch_object, fetcher, receive, sink, parallel=1))
            await trio.sleep(1.0)
            assert all(fetcher.is_fetching(r.digest) for r in refs)  # one running, two queued
            release.set()
        assert not any(fetcher.is_fetching(r.digest) for r in refs)
        # Cancelled with offers still queued: none of them stays "fetching".
        release = trio.Event()
        http.gate = release
        send, receive = trio.open_memory_channel[ChunkOffer](len(refs))
        more = [ChunkRef(hashlib.sha256(b"r%d" % i).digest(), SIZE) for i in range(3)]
        for i, ref in enumerate(more):
            send.send_nowait(ChunkOffer(i, ref, (SEEDER,), direct=True))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(functools.partial(fetch_object, fetcher, receive, sink, parallel=1))
            await trio.sleep(1.0)
            assert all(fetcher.is_fetching(r.digest) for r in more)
            nursery.cancel_scope.cancel()
        assert not any(fetcher.is_fetching(r.digest) for r in more)
