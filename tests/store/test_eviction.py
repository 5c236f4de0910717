"""The size cap: LRU eviction that keeps pinned and in-use objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from frumitcache.errors import NotInStoreError, StoreFullError
from frumitcache.store import Store

from .conftest import CHUNK, blob, sha
from .test_objects import read_all, write_object

OBJ = 4 * CHUNK  # each test object is exactly four chunks


def small_store(store_dir: Path, objects: int) -> Store:
    return Store.open(store_dir, max_bytes=objects * OBJ, chunk_size=CHUNK)


async def test_lru_eviction_under_cap(store_dir: Path) -> None:
    with trio.fail_after(20), small_store(store_dir, 3) as s:
        digests = [await write_object(s, f"o{i}", blob(OBJ, seed=i)) for i in range(3)]
        assert s.stats().bytes_used == 3 * OBJ
        s.touch(digests[0])  # o0 is now more recently used than o1
        await trio.sleep(0.01)
        d3 = await write_object(s, "o3", blob(OBJ, seed=3))
        assert s.lookup("o1") is None  # least recently used went first
        for key in ("o0", "o2", "o3"):
            assert s.lookup(key) is not None
        assert await read_all(s, d3) == blob(OBJ, seed=3)
        stats = s.stats()
        assert stats.bytes_used <= stats.max_bytes
        assert stats.evicted_objects == 1
        assert stats.evicted_bytes == OBJ
        assert not any((s.root / "chunks").rglob(sha(blob(OBJ, seed=1)[:CHUNK]).hex()))


async def test_pins_and_readers_are_respected(store_dir: Path) -> None:
    with trio.fail_after(20), small_store(store_dir, 3) as s:
        d = [await write_object(s, f"o{i}", blob(OBJ, seed=i)) for i in range(3)]
        s.pin(d[0])
        assert s.stats().pinned_bytes == OBJ
        async with s.open_reader("o1") as reader:
            first = await reader.__anext__()
            # o0 pinned, o1 being read: o2 is the only candidate even though it is newest.
            await write_object(s, "o3", blob(OBJ, seed=3))
            assert s.lookup("o2") is None
            assert s.lookup("o0") is not None
            assert s.lookup("o1") is not None
            rest = b"".join([c async for c in reader])
            assert first + rest == blob(OBJ, seed=1)
            # Nothing left to evict except o3 (newest): it goes; then nothing at all.
            await write_object(s, "o4", blob(OBJ, seed=4))
            assert s.lookup("o3") is None
            w = s.open_writer("o5")
            with pytest.raises(StoreFullError, match="nothing left to evict"):
                await w.write(blob(2 * OBJ, seed=5))
            await w.discard()
        # The reader is closed: o1 may go now; o0 stays pinned.
        await write_object(s, "o6", blob(OBJ, seed=6))
        assert s.lookup("o0") is not None
        s.unpin(d[0])
        assert s.stats().pinned_bytes == 0


async def test_pin_before_the_object_exists(store_dir: Path) -> None:
    with trio.fail_after(20), small_store(store_dir, 2) as s:
        data = blob(OBJ, seed=9)
        s.pin(sha(data))
        assert s.is_pinned(sha(data))
        await write_object(s, "pinned", data)
        await write_object(s, "a", blob(OBJ, seed=10))
        await write_object(s, "b", blob(OBJ, seed=11))
        assert s.lookup("pinned") is not None
        assert s.lookup("a") is None


async def test_evict_explicit_and_abandoned_partials(store_dir: Path) -> None:
    with trio.fail_after(20), small_store(store_dir, 3) as s:
        await write_object(s, "o0", blob(OBJ, seed=0))
        w = s.open_writer("partial")
        await w.write(blob(OBJ, seed=1))
        await w.abort()
        assert s.stats().partial_objects == 1
        assert await s.evict(0) == 0
        assert await s.evict(2 * OBJ) == OBJ  # one has to go: the older one
        assert s.lookup("o0") is None
        assert s.stats().partial_objects == 1
        assert await s.evict(3 * OBJ) == OBJ  # now the abandoned partial too
        assert s.stats().partial_objects == 0
        assert s.stats().bytes_used == 0
        with pytest.raises(NotInStoreError):
            await read_all(s, "o0")


async def test_open_writer_partial_is_never_evicted(store_dir: Path) -> None:
    with trio.fail_after(20), small_store(store_dir, 2) as s:
        w = s.open_writer("big")
        await w.write(blob(2 * OBJ, seed=1))
        with pytest.raises(StoreFullError):
            await w.write(blob(CHUNK, seed=2))
        assert w.closed
        # What the writer stored stays as a resumable partial.
        assert len(s.partial_chunks("big")) == 8
        await w.discard()
        assert s.stats().bytes_used == 0
