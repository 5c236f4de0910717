"""A held origin fetch that is drained before it is stopped (origin/_hold.py, the fence of a
seeder the site replaced): the bytes already waiting in its socket join its unfinished chunk,
kept in memory for the next writer (the new seeder takes it over). It crosses one chunk
boundary at most (that chunk is stored: its seeder announces it as it stops) and stops a byte
short of the next one and of the object's end, so no complete object appears. Through the
real test origin and the real fetcher."""

from __future__ import annotations

import hashlib
import random
from functools import partial
from pathlib import Path

import trio

from frumitcache.config import OriginConfig
from frumitcache.origin import FetchHold, OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.origin import OriginServer

MiB = 1 << 20
CHUNK = MiB


async def _held_then_stopped(
    tmp_path: Path, address: str, *, size: int, hold_at: int, drain: bool, chunk: int = CHUNK
) -> tuple[bytes, int, int, tuple[int, bytes | None, bytes] | None, list[bytes]]:
    """Fetch ``size`` bytes from an origin at 2 MB/s, hold once it sent ``hold_at``, let the
    socket fill, drain (or not), stop. The data, the origin's bytes sent and delivered, the
    kept tail, the chunks stored."""
    data = random.Random(size + hold_at).randbytes(size)
    async with trio.open_nursery() as nursery:
        origin = OriginServer(rate=2_000_000)
        await nursery.start(origin.serve, address)
        origin.add("/d.bin", data)
        url = origin.url("/d.bin")
        with Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=chunk) as store:
            fetcher = OriginFetcher(OriginConfig(allow=["127.0.0.0/8:*"]), store)
            hold = FetchHold()
            with trio.fail_after(30):
                async with trio.open_nursery() as inner:
                    inner.start_soon(partial(fetcher.fetch, url, hold=hold))
                    while origin.stats.bytes_sent["/d.bin"] < hold_at:  # noqa: ASYNC110
                        await trio.sleep(0.01)
                    hold.hold()
                    await trio.sleep(1.0)  # the socket fills; the origin waits on the window
                    if drain:
                        await hold.drain(chunk_size=chunk)
                    inner.cancel_scope.cancel()
            await fetcher.aclose()  # the fetch runs in the fetcher's nursery: stopped here
            sent = origin.stats.bytes_sent["/d.bin"]
            delivered = origin.stats.total_bytes_delivered
            assert delivered is not None
            kept = store.kept_tail(url)
            stored = store.partial_chunks(url)
        nursery.cancel_scope.cancel()
    return data, sent, delivered, kept, stored


async def test_a_drained_fetch_keeps_what_had_crossed(tmp_path: Path, address: str) -> None:
    lost: dict[bool, int] = {}
    crossed_lost: dict[bool, int] = {}
    for drain in (True, False):
        data, sent, delivered, kept, _ = await _held_then_stopped(
            tmp_path / str(drain), address, size=4 * MiB, hold_at=CHUNK + 100_000, drain=drain
        )
        assert kept is not None
        at, _, tail = kept
        # Drained, what waits may run past the second chunk's end: that chunk is stored.
        assert at == CHUNK or (drain and at == 2 * CHUNK), at
        assert tail == data[at : at + len(tail)]
        lost[drain] = sent - (at + len(tail))
        crossed_lost[drain] = delivered - (at + len(tail))
    # Without the drain, what waited in the socket (its receive buffer, 128 KiB at least) is
    # lost; with it, only the origin's own send buffer.
    assert lost[True] + 128 * 1024 < lost[False], lost
    # Of what crossed (the fetch's TCP acknowledged it), the drain loses at most what its
    # shrunk receive buffer lets in after the last read (8 KiB); before that shrink, each
    # read let more of the origin's send buffer in, to be dropped at the close.
    assert 0 <= crossed_lost[True] <= 8 * 1024 < 128 * 1024 <= crossed_lost[False], crossed_lost


def _digests(data: bytes, chunk: int, count: int) -> list[bytes]:
    return [hashlib.sha256(data[i * chunk : (i + 1) * chunk]).digest() for i in range(count)]


async def test_a_drain_completes_the_chunk_it_is_in_and_keeps_what_follows(
    tmp_path: Path, address: str
) -> None:
    """Issue 14's keep4 run (1.0195 x F): fenced 8 KB short of a boundary with 254 KB waiting
    past it, the drain stopped at the boundary and those bytes crossed again."""
    data, _, _, kept, stored = await _held_then_stopped(
        tmp_path, address, size=4 * MiB, hold_at=2 * CHUNK - 50_000, drain=True
    )
    assert kept is not None
    at, _, tail = kept
    assert stored == _digests(data, CHUNK, 2)  # the second chunk completed in the drain
    assert at == 2 * CHUNK
    assert 0 < len(tail) < CHUNK
    assert tail == data[at : at + len(tail)]


async def test_a_drain_stops_a_byte_short_of_the_second_boundary(
    tmp_path: Path, address: str
) -> None:
    """With 64 KiB chunks the socket holds more than two: one is completed, the next is kept
    less its last byte, the rest is dropped (no run of chunks appears unannounced)."""
    chunk = 64 * 1024
    data, _, _, kept, stored = await _held_then_stopped(
        tmp_path, address, size=4 * MiB, hold_at=MiB + 10_000, drain=True, chunk=chunk
    )
    assert kept is not None
    at, _, tail = kept
    assert at == len(stored) * chunk
    assert stored == _digests(data, chunk, len(stored))
    assert tail == data[at : at + chunk - 1]


async def test_a_drain_stops_a_byte_short_of_the_objects_end(tmp_path: Path, address: str) -> None:
    size = CHUNK + 300_000
    data, _, _, kept, stored = await _held_then_stopped(
        tmp_path, address, size=size, hold_at=CHUNK + 100_000, drain=True
    )
    assert kept is not None
    at, _, tail = kept
    assert stored == _digests(data, CHUNK, 1)
    assert (at, at + len(tail)) == (CHUNK, size - 1)
    assert tail == data[at : size - 1]
