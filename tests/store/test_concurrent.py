"""Readers follow a writer chunk by chunk (cut-through)."""

from __future__ import annotations

import pytest
import trio
import trio.lowlevel

from frumitcache.errors import NotInStoreError
from frumitcache.store import Store

from .conftest import CHUNK, blob, sha


async def test_reader_gets_chunk_zero_before_writer_finishes(store: Store) -> None:
    data = blob(4 * CHUNK + 17, seed=1)
    got_first = trio.Event()
    received: list[bytes] = []
    with trio.fail_after(10):
        writer = store.open_writer("url", expected_size=len(data))

        async def read(offset: int, out: list[bytes]) -> None:
            async with store.open_reader("url", offset=offset) as reader:
                assert reader.size == len(data)
                assert reader.key == "url"
                async for chunk in reader:
                    out.append(chunk)
                    got_first.set()
                assert reader.manifest is not None
                assert reader.manifest.digest == sha(data)

        other: list[bytes] = []
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read, 0, received)
            nursery.start_soon(read, CHUNK + 3, other)
            await trio.lowlevel.checkpoint()
            await writer.write(data[:CHUNK])  # chunk 0 is stored; the object is not complete
            await got_first.wait()
            assert received == [data[:CHUNK]]
            assert store.lookup("url") is None
            await writer.write(data[CHUNK:])
            await writer.finish()
        assert b"".join(received) == data
        assert b"".join(other) == data[CHUNK + 3 :]


async def test_reader_fails_when_writer_aborts(store: Store) -> None:
    with trio.fail_after(10):
        writer = store.open_writer("url")
        await writer.write(blob(CHUNK, seed=2))
        async with store.open_reader("url") as reader:
            assert await reader.__anext__() == blob(CHUNK, seed=2)

            async def abort_soon() -> None:
                await trio.sleep(0.01)
                await writer.abort()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(abort_soon)
                with pytest.raises(NotInStoreError, match="aborted"):
                    await reader.__anext__()


async def test_reader_by_expected_digest_while_writing(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(2 * CHUNK + 1, seed=3)
        writer = store.open_writer("http://o/x", expected_digest=sha(data))
        async with trio.open_nursery() as nursery:

            async def read() -> None:
                async with store.open_reader(sha(data)) as reader:
                    assert await reader.readall() == data

            nursery.start_soon(read)
            await trio.lowlevel.checkpoint()
            await writer.write(data)
            await writer.finish()


async def test_reader_holds_object_finished_while_reading(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(2 * CHUNK, seed=4)
        writer = store.open_writer("url")
        async with store.open_reader("url") as reader:
            await writer.write(data)
            manifest = await writer.finish()
            # The finished object is in use by the reader: eviction cannot take it.
            assert store._core.in_use[manifest.digest] == 1
            assert await reader.readall() == data
        assert store._core.in_use[manifest.digest] == 0
