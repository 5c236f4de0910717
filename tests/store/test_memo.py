"""The store's read memo: hot lookups come from memory, and never outlive a change."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import trio

from frumitcache.errors import NotInStoreError
from frumitcache.store import Store
from frumitcache.store._memo import ReadMemo

from .conftest import CHUNK, blob, sha
from .test_objects import read_all, write_object


@contextmanager
def index_reads(store: Store, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Count the read transactions the store opens on its index."""
    index = store._core.index
    count = [0]
    real = index.read

    def counted() -> Any:
        count[0] += 1
        return real()

    monkeypatch.setattr(index, "read", counted)
    yield count
    monkeypatch.undo()


async def test_a_hot_object_is_served_without_index_reads(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.fail_after(10):
        data = blob(3 * CHUNK + 5)
        digest = await write_object(store, "http://o/a", data)
        store.set_key_meta("http://o/a", {"etag": '"1"'})
        first = store.lookup("http://o/a")
        assert first is not None
        assert store.lookup(digest) == first
        assert store.key_meta("http://o/a") == {"etag": '"1"'}
        paths = [store.chunk_path(c) for c in first.chunks]
        with index_reads(store, monkeypatch) as reads:
            for _ in range(3):
                assert store.lookup("http://o/a") == first
                assert store.lookup(digest) == first
                assert store.key_meta("http://o/a") == {"etag": '"1"'}
                assert [store.chunk_path(c) for c in first.chunks] == paths
                async with store.open_reader("http://o/a") as reader:  # what sendfile holds
                    assert reader.size == len(data)
        assert reads[0] == 0
        assert await read_all(store, "http://o/a") == data


async def test_key_meta_is_a_copy(store: Store) -> None:
    store.set_key_meta("k", {"etag": "x"})
    store.key_meta("k")["etag"] = "changed by a caller"
    assert store.key_meta("k") == {"etag": "x"}


async def test_a_key_moved_to_a_new_version_is_seen_at_once(store: Store) -> None:
    """What an index revalidated with a change does to the store: the URL names new bytes,
    with new metadata; the memo of the old answer is gone."""
    with trio.fail_after(10):
        old, new = blob(2 * CHUNK, seed=1), blob(CHUNK + 7, seed=2)
        await write_object(store, "http://o/Packages", old)
        store.set_key_meta("http://o/Packages", {"etag": '"old"'})
        held = store.lookup("http://o/Packages")
        assert held is not None
        assert held.digest == sha(old)
        assert store.key_meta("http://o/Packages") == {"etag": '"old"'}

        await write_object(store, "http://o/Packages", new)
        store.set_key_meta("http://o/Packages", {"etag": '"new"'})
        now = store.lookup("http://o/Packages")
        assert now is not None
        assert now.digest == sha(new)
        assert store.key_meta("http://o/Packages") == {"etag": '"new"'}
        assert await read_all(store, "http://o/Packages") == new

        # Mapping a key by hand, as a digest request under another URL does.
        store.map_key("http://mirror/Packages", sha(old))
        assert store.lookup("http://mirror/Packages") == held
        store.map_key("http://mirror/Packages", sha(new))
        assert store.lookup("http://mirror/Packages") == now


async def test_an_evicted_object_is_not_remembered(store_dir: Any) -> None:
    with Store.open(store_dir, max_bytes=4 * CHUNK, chunk_size=CHUNK) as small, trio.fail_after(10):
        first = blob(3 * CHUNK, seed=3)
        await write_object(small, "a", first)
        held = small.lookup("a")
        assert held is not None
        chunk = held.chunks[0]
        assert small.chunk_path(chunk).exists()
        await write_object(small, "b", blob(3 * CHUNK, seed=4))  # evicts "a"
        assert small.lookup("a") is None
        assert small.lookup(sha(first)) is None
        with pytest.raises(NotInStoreError):
            small.chunk_path(chunk)


async def test_arriving_chunks_keep_the_memo(store: Store) -> None:
    """Chunks and partial objects arriving (a download in progress) do not drop what is
    remembered: only changes to keys, objects or chunks' presence do."""
    with trio.fail_after(10):
        await write_object(store, "a", blob(CHUNK))
        assert store.lookup("a") is not None
        before = store._core.index.generation
        part = blob(CHUNK, seed=9)
        await store.put_chunk(part, sha(part))
        async with store.open_writer("b") as w:
            await w.write(blob(2 * CHUNK, seed=10))
            assert store._core.index.generation == before
            await w.finish()
        assert store._core.index.generation > before  # the object "b" is complete: a change


class _Index:
    generation = 0


def test_memo_rereads_after_the_generation_moves() -> None:
    index = _Index()
    memo = ReadMemo(index, limit=3)  # type: ignore[arg-type]
    reads: list[str] = []

    def read(value: str | None) -> Any:
        def go() -> str | None:
            reads.append(str(value))
            return value

        return go

    assert memo.get("t", 1, read("a")) == "a"
    assert memo.get("t", 1, read("b")) == "a"  # remembered
    assert memo.get("t", 2, read(None)) is None
    assert memo.get("t", 2, read("c")) is None  # an absence is remembered too...
    assert memo.get("t", 3, read(None), keep_none=False) is None
    assert memo.get("t", 3, read("d"), keep_none=False) == "d"  # ...unless told otherwise
    assert reads == ["a", "None", "None", "d"]
    index.generation += 1
    assert memo.get("t", 1, read("e")) == "e"
    assert len(memo) == 1  # the stale entries were dropped at once
    for key in range(10, 20):
        memo.get("t", key, read("x"))
    assert len(memo) <= 3  # bounded
