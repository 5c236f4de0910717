"""Scrub and read-time checks find bit rot and truncation in real chunk files."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from frumitcache.errors import CorruptChunkError, NotInStoreError
from frumitcache.store import Store

from .conftest import CHUNK, blob, sha
from .test_objects import read_all, write_object


def flip_byte(path: Path, at: int) -> None:
    raw = bytearray(path.read_bytes())
    raw[at] ^= 0x01
    path.write_bytes(bytes(raw))


async def test_scrub_clean_store(store: Store) -> None:
    with trio.fail_after(10):
        await write_object(store, "a", blob(3 * CHUNK + 1))
        report = await store.scrub()
        assert report.chunks_checked == 4
        assert report.bytes_checked == 3 * CHUNK + 1
        assert report.damage == 0
        assert report.objects_affected == 0


async def test_scrub_finds_flipped_byte_and_truncation(store: Store) -> None:
    with trio.fail_after(10):
        a = blob(4 * CHUNK, seed=1)
        b = blob(2 * CHUNK + 9, seed=2)
        c = blob(CHUNK, seed=3)
        ma = store.lookup(await write_object(store, "a", a))
        mb = store.lookup(await write_object(store, "b", b))
        await write_object(store, "c", c)
        assert ma is not None
        assert mb is not None
        flip_byte(store.chunk_path(ma.chunks[2]), 100)
        path_b = store.chunk_path(mb.chunks[1])
        path_b.write_bytes(path_b.read_bytes()[:-1])

        report = await store.scrub()
        assert report.corrupt_chunks == 1
        assert report.missing_chunks == 1
        assert report.objects_affected == 2
        assert store.lookup("a") is None
        assert store.lookup("b") is None
        assert await read_all(store, "c") == c
        # The damaged objects are resumable partials holding their good prefix.
        assert store.partial_chunks("a") == list(ma.chunks[:2])
        assert store.partial_chunks("b") == list(mb.chunks[:1])
        assert not store.has_chunk(ma.chunks[2])
        assert not path_b.exists()
        # A second scrub finds nothing more; a resumed write completes the object again.
        assert (await store.scrub()).damage == 0
        w = store.open_writer("a", expected_digest=sha(a))
        assert w.offset == 2 * CHUNK
        await w.write(a[w.offset :])
        await w.finish()
        assert await read_all(store, "a") == a


async def test_read_detects_corruption_and_removes_chunk(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(2 * CHUNK, seed=4)
        m = store.lookup(await write_object(store, "a", data))
        assert m is not None
        flip_byte(store.chunk_path(m.chunks[1]), 0)
        async with store.open_reader("a") as reader:
            assert await reader.__anext__() == data[:CHUNK]
            with pytest.raises(CorruptChunkError):
                await reader.__anext__()
        assert store.lookup("a") is None
        assert not store.has_chunk(m.chunks[1])
        with pytest.raises(NotInStoreError):
            await store.read_chunk(m.chunks[1])


async def test_index_checksum_wrong_but_bytes_good_is_repaired(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(CHUNK, seed=5)
        await store.put_chunk(data, sha(data))
        with store._core.index.write("test") as tx:
            tx.execute("UPDATE chunks SET xxh3 = ? WHERE digest = ?", (b"\0" * 8, sha(data)))
        report = await store.scrub()
        assert report.repaired_checksums == 1
        assert report.damage == 0
        assert await store.read_chunk(sha(data)) == data
