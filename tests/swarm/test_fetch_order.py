"""fetch_object fetches an object's chunks in index order, ``parallel`` at a time, so its sink
(the member's store writer, followed by a client's reader) gets chunk 0 early: with one task
per chunk the scheduler started a whole batch backwards half the time, and a member of a site
handed its client nothing until all 12,800 chunks of a 3.1 GiB object were in (bench.big)."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any, cast

import pytest
import trio

from frumitcache.errors import PeerError
from frumitcache.swarm import ChunkOffer, ChunkRef, Holder, fetch_object

HOLDER = Holder("127.0.0.1", 1, 2)


class _Fetcher:
    """Records when each chunk's fetch starts; each takes a scheduler round or two."""

    def __init__(self, fail: dict[bytes, int] | None = None) -> None:
        self.started: list[bytes] = []
        self.fail = dict(fail or {})
        self.running = 0
        self.most = 0

    async def fetch(self, chunk: ChunkRef, holders: Sequence[Holder], *, direct: bool) -> None:
        self.started.append(chunk.digest)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await trio.lowlevel.checkpoint()
            await trio.lowlevel.checkpoint()
            if self.fail.get(chunk.digest, 0) > 0:
                self.fail[chunk.digest] -= 1
                raise PeerError("holder went away")
        finally:
            self.running -= 1

    def add_holders(self, chunk: ChunkRef, holders: Sequence[Holder]) -> None:
        pass

    def want_trees(self, chunks: Sequence[ChunkRef]) -> None:
        pass

    def note_queued(self, digest: bytes, n: int) -> None:
        pass


def _refs(n: int) -> list[ChunkRef]:
    return [ChunkRef(hashlib.sha256(b"%d" % i).digest(), 1 << 20) for i in range(n)]


async def _run(fetcher: _Fetcher, refs: list[ChunkRef], parallel: int) -> list[tuple[int, int]]:
    """Fetch ``refs`` (all offered at once, as for a complete object); returns, per sink call,
    (index, how many fetches had started by then)."""
    send, receive = trio.open_memory_channel[ChunkOffer](len(refs))
    for i, ref in enumerate(refs):
        send.send_nowait(ChunkOffer(i, ref, (HOLDER,)))
    await send.aclose()
    sunk: list[tuple[int, int]] = []

    async def sink(index: int, chunk: ChunkRef) -> None:
        sunk.append((index, len(fetcher.started)))

    with trio.fail_after(30):
        assert await fetch_object(cast(Any, fetcher), receive, sink, parallel=parallel) == len(refs)
    return sunk


async def test_chunks_are_fetched_in_index_order_and_delivered_early() -> None:
    refs = _refs(400)
    for _ in range(12):  # the old order was a coin flip per run: 12 runs all forwards
        fetcher = _Fetcher()
        sunk = await _run(fetcher, refs, parallel=8)
        # In index order up to the few the scheduler wakes together (at most ``parallel``).
        index = {r.digest: i for i, r in enumerate(refs)}
        order = [index[d] for d in fetcher.started]
        assert sorted(order) == list(range(400))
        assert all(abs(i - at) < 8 for at, i in enumerate(order)), order
        assert [i for i, _ in sunk] == list(range(400))
        assert fetcher.most == 8
        # Chunk 0 reached the sink while most of the object was not even asked for.
        assert sunk[0][1] <= 64, sunk[:3]


async def test_a_failing_chunk_is_retried_and_order_kept() -> None:
    refs = _refs(20)
    fetcher = _Fetcher(fail={refs[3].digest: 2})
    sunk = await _run(fetcher, refs, parallel=3)
    assert [i for i, _ in sunk] == list(range(20))
    assert fetcher.started.count(refs[3].digest) == 3
    assert fetcher.most <= 3


async def test_a_chunk_failing_every_retry_fails_the_object() -> None:
    refs = _refs(10)
    fetcher = _Fetcher(fail={refs[5].digest: 99})
    with pytest.raises(PeerError, match="went away"):
        await _run(fetcher, refs, parallel=2)
