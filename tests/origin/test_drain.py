"""A held origin fetch that is drained before it is stopped (origin/_hold.py, the fence of a
seeder the site replaced): the bytes already waiting in its socket join its unfinished chunk,
kept in memory for the next writer (the new seeder takes it over), a byte short of the next
chunk boundary and of the object's end, so no whole chunk or complete object appears that the
site was not told of. Through the real test origin and the real fetcher."""

from __future__ import annotations

import random
from functools import partial
from pathlib import Path

import pytest
import trio

from frumitcache.config import OriginConfig
from frumitcache.origin import FetchHold, OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.origin import OriginServer

MiB = 1 << 20
CHUNK = MiB


async def _held_then_stopped(
    tmp_path: Path, address: str, *, size: int, hold_at: int, drain: bool
) -> tuple[bytes, int, int, tuple[int, bytes | None, bytes] | None]:
    """Fetch ``size`` bytes from an origin at 2 MB/s, hold once it sent ``hold_at``, let the
    socket fill, drain (or not), stop. The data, the origin's bytes sent, the kept tail."""
    data = random.Random(size + hold_at).randbytes(size)
    async with trio.open_nursery() as nursery:
        origin = OriginServer(rate=2_000_000)
        await nursery.start(origin.serve, address)
        origin.add("/d.bin", data)
        url = origin.url("/d.bin")
        with Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK) as store:
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
                        await hold.drain(chunk_size=CHUNK)
                    inner.cancel_scope.cancel()
            await fetcher.aclose()  # the fetch runs in the fetcher's nursery: stopped here
            sent = origin.stats.bytes_sent["/d.bin"]
            delivered = origin.stats.total_bytes_delivered
            assert delivered is not None
            kept = store.kept_tail(url)
        nursery.cancel_scope.cancel()
    return data, sent, delivered, kept


async def test_a_drained_fetch_keeps_what_had_crossed(tmp_path: Path, address: str) -> None:
    lost: dict[bool, int] = {}
    crossed_lost: dict[bool, int] = {}
    for drain in (True, False):
        data, sent, delivered, kept = await _held_then_stopped(
            tmp_path / str(drain), address, size=4 * MiB, hold_at=CHUNK + 100_000, drain=drain
        )
        assert kept is not None
        at, _, tail = kept
        assert at == CHUNK
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


@pytest.mark.parametrize(
    ("case", "size", "hold_at", "end"),
    [
        ("a byte short of the chunk boundary", 4 * MiB, 2 * CHUNK - 50_000, 2 * CHUNK - 1),
        ("a byte short of the object's end", CHUNK + 300_000, CHUNK + 100_000, CHUNK + 299_999),
    ],
)
async def test_a_drain_stops_short(
    tmp_path: Path, address: str, case: str, size: int, hold_at: int, end: int
) -> None:
    data, _, _, kept = await _held_then_stopped(
        tmp_path, address, size=size, hold_at=hold_at, drain=True
    )
    assert kept is not None
    at, _, tail = kept
    assert (at, at + len(tail)) == (CHUNK, end)
    assert tail == data[at:end]
