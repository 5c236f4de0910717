"""An object larger than the whole store is refused when the origin announces its size, before
its body crosses the uplink (bench.big --store-max: 37 of 64 MiB came over first, then "store
is full"); one that fits is fetched as before, and one of unknown size still fails once full."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from frumitcache.config import OriginConfig
from frumitcache.errors import StoreFullError
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.origin import OriginServer

CAP = 1 << 20
SETTINGS = {
    "connect_timeout_s": 2.0,
    "read_timeout_s": 2.0,
    "retries": 1,
    "allow": ["127.0.0.0/8:*"],  # the test origin's loopback address, named
}


async def test_an_object_bigger_than_the_store_is_refused_up_front(
    origin: OriginServer, tmp_path: Path
) -> None:
    big = os.urandom(8 * CAP)
    origin.add("/big.bin", big)
    origin.add("/fits.bin", big[: CAP // 2])
    with Store.open(tmp_path / "store", max_bytes=CAP, chunk_size=16 * 1024) as store:
        fetcher = OriginFetcher(OriginConfig(**SETTINGS), store)  # type: ignore[arg-type]
        try:
            with trio.fail_after(20):
                with pytest.raises(StoreFullError, match=r"8388608 bytes, more than store"):
                    await fetcher.fetch(origin.url("/big.bin"))
                assert store.lookup(origin.url("/big.bin")) is None
                # Not the body: at most what the socket buffers took before the close.
                assert origin.stats.bytes_sent["/big.bin"] < len(big) // 2
                assert origin.stats.requests["/big.bin"] == 1  # not retried: it never fits
                info = await fetcher.fetch(origin.url("/fits.bin"))
                assert info.size == CAP // 2
        finally:
            await fetcher.aclose()
