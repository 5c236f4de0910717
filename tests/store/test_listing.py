"""Listing the store (objects, partial keys) and watching a key's chunks as they land."""

from __future__ import annotations

import pytest
import trio

from frumitcache.errors import NotInStoreError
from frumitcache.store import Store

from .conftest import CHUNK, blob, sha
from .test_objects import write_object


async def test_objects_and_partial_keys(store: Store) -> None:
    with trio.fail_after(10):
        a = await write_object(store, "http://a/x", blob(CHUNK + 1, seed=1))
        store.map_key("http://b/x", a)
        await trio.sleep(0.01)
        b = await write_object(store, "http://a/y", blob(10, seed=2))
        store.pin(b)
        w = store.open_writer("http://a/z")
        await w.write(blob(CHUNK, seed=3))
        await w.abort()
        listed = store.objects()
        assert [o.manifest.digest for o in listed] == [b, a]  # most recently used first
        assert listed[1].keys == ("http://a/x", "http://b/x")
        assert [o.pinned for o in listed] == [True, False]
        assert store.partial_keys() == ["http://a/z"]


async def test_watch_chunks_follows_writer(store: Store) -> None:
    data = blob(3 * CHUNK + 5, seed=4)
    seen: list[tuple[int, bytes]] = []
    first = trio.Event()
    with trio.fail_after(10):
        w = store.open_writer("url")

        async def watch() -> None:
            async for index, digest in store.watch_chunks("url"):
                seen.append((index, digest))
                first.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await w.write(data[:CHUNK])
            await first.wait()
            assert seen == [(0, sha(data[:CHUNK]))]
            await w.write(data[CHUNK:])
            manifest = await w.finish()
        assert seen == list(enumerate(manifest.chunks))
        # A complete object is listed at once.
        assert [d async for _, d in store.watch_chunks("url")] == list(manifest.chunks)


async def test_watch_chunks_raises_when_writer_aborts_or_nothing(store: Store) -> None:
    with trio.fail_after(10):
        with pytest.raises(NotInStoreError):
            async for _ in store.watch_chunks("nothing"):
                pass  # pragma: no cover
        w = store.open_writer("url")
        await w.write(blob(CHUNK, seed=5))
        got: list[int] = []

        async def drain() -> None:
            async for index, _ in store.watch_chunks("url"):
                got.append(index)

        async def watch() -> None:
            with pytest.raises(NotInStoreError, match="aborted"):
                await drain()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.sleep(0.01)
            await w.abort()
        assert got == [0]
