"""A chunk list that names one digest at many indexes (zeros in a disk image): the digest is
fetched once however many of fetch_object's workers reach it at the same time, and a fetch that
fails leaves the others to try for themselves (hostile: the first holder drops the chunk)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

import trio

from frumitcache.errors import PeerError
from frumitcache.swarm import ChunkFetcher, ChunkOffer, ChunkRef, Holder, fetch_object

HOLDER = Holder("127.0.0.1", 1, 2)
ZERO = ChunkRef(hashlib.sha256(bytes(1 << 16)).digest(), 1 << 16)
OTHER = ChunkRef(hashlib.sha256(b"other").digest(), 1 << 16)


class _Store:
    def __init__(self) -> None:
        self.chunks: set[bytes] = set()

    def has_chunk(self, digest: bytes) -> bool:
        return digest in self.chunks


class _Http:
    """Peer HTTP that takes a few scheduler rounds per chunk; ``fail`` first fetches fail."""

    def __init__(self, store: _Store, fail: int = 0) -> None:
        self.store = store
        self.fail = fail
        self.fetched: list[bytes] = []
        self.bad_holders: set[str] = set()

    async def fetch(self, digest: bytes, size: int, holders: Sequence[tuple[str, int]]) -> None:
        self.fetched.append(digest)
        for _ in range(5):
            await trio.lowlevel.checkpoint()
        if self.fail:
            self.fail -= 1
            raise PeerError("the holder dropped the chunk")
        self.store.chunks.add(digest)


def _fetcher(fail: int = 0) -> tuple[ChunkFetcher, _Http]:
    store = _Store()
    http = _Http(store, fail)
    return ChunkFetcher(cast(Any, store), cast(Any, http), small_chunk_bytes=1 << 20), http


async def _fetch_all(fetcher: ChunkFetcher, refs: list[ChunkRef], *, direct: bool) -> list[int]:
    send, receive = trio.open_memory_channel[ChunkOffer](len(refs))
    for i, ref in enumerate(refs):
        send.send_nowait(ChunkOffer(i, ref, (HOLDER,), direct=direct))
    await send.aclose()
    sunk: list[int] = []

    async def sink(index: int, chunk: ChunkRef) -> None:
        assert chunk == refs[index]
        sunk.append(index)

    with trio.fail_after(10):
        await fetch_object(fetcher, receive, sink, parallel=8)
    return sunk


async def test_a_digest_at_many_indexes_is_fetched_once() -> None:
    refs = [OTHER, *[ZERO] * 40, OTHER, ZERO]
    for direct in (True, False):  # warm (direct) and cold offers take the same way here
        fetcher, http = _fetcher()
        assert await _fetch_all(fetcher, refs, direct=direct) == list(range(len(refs)))
        assert sorted(http.fetched) == sorted([ZERO.digest, OTHER.digest])


async def test_waiters_on_a_failed_fetch_try_themselves() -> None:
    fetcher, http = _fetcher(fail=1)
    refs = [ZERO] * 8
    assert await _fetch_all(fetcher, refs, direct=True) == list(range(8))
    # The first try failed; one of the waiting workers fetched it, the others waited on that.
    assert http.fetched == [ZERO.digest, ZERO.digest]


async def test_concurrent_fetches_of_one_chunk_share_one_transfer() -> None:
    fetcher, http = _fetcher()
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(5):
                nursery.start_soon(lambda: fetcher.fetch(ZERO, [HOLDER], direct=True))
    assert http.fetched == [ZERO.digest]
