"""Properties: however the bytes are split into writes, the object and its chunks come out
the same, and a read from any offset returns exactly the tail of the object."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from frumitcache.store import Store

CHUNK = 1024


def test_splits_and_offsets(tmp_path: Path) -> None:
    keys = itertools.count()
    with Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK) as store:

        @settings(max_examples=30, deadline=None)
        @given(
            data=st.binary(min_size=0, max_size=5 * CHUNK + 3),
            cuts=st.lists(st.integers(min_value=0, max_value=5 * CHUNK + 3), max_size=8),
            offset=st.integers(min_value=0, max_value=5 * CHUNK + 3),
        )
        def check(data: bytes, cuts: list[int], offset: int) -> None:
            offset = min(offset, len(data))
            bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
            key = f"k{next(keys)}"

            async def run() -> None:
                with trio.fail_after(20):
                    async with store.open_writer(key) as w:
                        for a, b in itertools.pairwise(bounds):
                            await w.write(data[a:b])
                        m = await w.finish()
                    assert m.digest == hashlib.sha256(data).digest()
                    assert m.size == len(data)
                    assert m.chunks == tuple(
                        hashlib.sha256(data[i : i + CHUNK]).digest()
                        for i in range(0, len(data), CHUNK)
                    )
                    async with store.open_reader(key, offset) as r:
                        assert await r.readall() == data[offset:]

            trio.run(run)

        check()
