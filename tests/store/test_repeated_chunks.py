"""Objects whose chunk lists repeat a digest (a disk image's zeros, a repeated block): the store
keeps each distinct chunk once, a full-size chunk of zeros as a hole, and its bookkeeping
(eviction, pins, partials, damage) counts every index that uses a chunk. A hole of the zero
chunk's length is handed out without a read; data or a cut in it is caught."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import trio

from frumitcache.errors import CorruptChunkError
from frumitcache.store import Store, _verify

from .conftest import CHUNK, blob, sha
from .test_objects import read_all, write_object

ZERO = bytes(CHUNK)


def allocated(path: Path) -> int:
    return os.stat(path).st_blocks * 512


async def test_one_copy_of_each_distinct_chunk_and_zeros_as_a_hole(store: Store) -> None:
    a = blob(CHUNK, seed=1)
    data = ZERO + a + ZERO + ZERO + a + ZERO + bytes(100)  # the short zero tail: its own digest
    with trio.fail_after(10):
        digest = await write_object(store, "http://o/disk.img", data, step=3000)
        manifest = store.lookup(digest)
        assert manifest is not None
        assert manifest.chunks == (sha(ZERO), sha(a), sha(ZERO), sha(ZERO), sha(a), sha(ZERO),
                                   sha(bytes(100)))  # fmt: skip
        stats = store.stats()
        assert (stats.chunks, stats.bytes_used) == (3, 2 * CHUNK + 100)
        zero_file = store.chunk_path(sha(ZERO))
        assert zero_file.stat().st_size == CHUNK
        assert allocated(zero_file) == 0  # a hole
        assert allocated(store.chunk_path(sha(a))) >= CHUNK
        assert await read_all(store, digest) == data
        assert await read_all(store, digest, offset=CHUNK + 5) == data[CHUNK + 5 :]
        assert (await store.scrub()).damage == 0


async def test_an_adopted_file_of_zeros_becomes_a_hole(store: Store) -> None:
    downloaded = store.tmp_dir / "download"
    downloaded.write_bytes(ZERO)
    with trio.fail_after(10):
        await store.adopt_chunk_file(downloaded, sha(ZERO))
    assert not downloaded.exists()
    assert store.has_chunk(sha(ZERO))
    assert allocated(store.chunk_path(sha(ZERO))) == 0
    assert await store.read_chunk(sha(ZERO)) == ZERO
    fd = await store.open_chunk(sha(ZERO))
    try:
        assert os.pread(fd, CHUNK + 1, 0) == ZERO
    finally:
        os.close(fd)
    # The same chunk adopted again (a second download of it): the file goes, nothing doubles.
    downloaded.write_bytes(ZERO)
    with trio.fail_after(10):
        await store.adopt_chunk_file(downloaded, sha(ZERO))
    assert not downloaded.exists()
    assert (store.stats().chunks, store.stats().bytes_used) == (1, CHUNK)


async def test_a_shared_chunk_outlives_an_evicted_object_and_a_dropped_partial(
    store_dir: Path,
) -> None:
    store = Store.open(store_dir, max_bytes=4 * CHUNK, chunk_size=CHUNK)
    try:
        a, b = blob(CHUNK, seed=2), blob(CHUNK, seed=3)
        with trio.fail_after(10):
            first = await write_object(store, "http://o/1", ZERO * 5 + a)
            store.pin(first)
            second = await write_object(store, "http://o/2", ZERO + b + ZERO)
            assert store.stats().chunks == 3  # zeros, a, b
            # A partial that repeats the zero chunk, then abandoned.
            async with store.open_writer("http://o/3") as w:
                await w.write(ZERO * 3)
                await w.abort()
            # Room for one more chunk: only the unpinned object that alone holds b can go; the
            # zero chunk it shares with the pinned one stays.
            await store.evict(2 * CHUNK)
            assert store.lookup(second) is None
            assert store.lookup(first) is not None
            assert store.has_chunk(sha(ZERO))
            assert not store.has_chunk(sha(b))
            assert await read_all(store, first) == ZERO * 5 + a
            store.unpin(first)
            await store.evict(4 * CHUNK)
            assert store.stats().chunks == 0
            assert store.partial_keys() == []
    finally:
        store.close()


async def test_a_damaged_repeated_chunk_demotes_the_object_at_its_first_index(
    store: Store,
) -> None:
    a = blob(CHUNK, seed=4)
    with trio.fail_after(10):
        digest = await write_object(store, "http://o/d", a + ZERO + a + ZERO)
        path = store.chunk_path(sha(a))
        path.chmod(0o644)
        path.write_bytes(b"rot" + a[3:])
        assert (await store.scrub()).corrupt_chunks == 1
        assert store.lookup(digest) is None
        # Resumable from before the first index that used the bad chunk: nothing.
        assert store.partial_chunks("http://o/d") == []
        digest2 = await write_object(store, "http://o/d", a + ZERO + a + ZERO)
        assert digest2 == digest
        assert await read_all(store, digest) == a + ZERO + a + ZERO


async def test_the_hole_is_passed_unread_and_rot_in_it_is_caught(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        digest = await write_object(store, "http://o/z", ZERO * 3)
        path = store.chunk_path(sha(ZERO))

        def unread(fd: int) -> tuple[bytes, int]:
            raise AssertionError("the hole was read")

        # A hole of the chunk's length is zeros by definition: opened without a read.
        with monkeypatch.context() as patch:
            patch.setattr(_verify, "xxh3_fd", unread)
            fd = await store.open_chunk(sha(ZERO))
            os.close(fd)
        # The same bytes written out (a store from before holes): checked by reading.
        path.chmod(0o644)
        path.write_bytes(ZERO)
        assert allocated(path) > 0
        os.close(await store.open_chunk(sha(ZERO)))
        # Hostile: data where the hole was.
        with path.open("r+b") as f:
            f.seek(CHUNK // 2)
            f.write(b"rot")
        with pytest.raises(CorruptChunkError):
            await store.open_chunk(sha(ZERO))
        assert store.lookup(digest) is None
        # A file cut short is not taken for a hole either.
        await write_object(store, "http://o/z", ZERO * 3)
        path.chmod(0o644)
        os.truncate(path, CHUNK // 2)
        with pytest.raises(CorruptChunkError):
            await store.open_chunk(sha(ZERO))
