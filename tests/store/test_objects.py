"""Writing and reading objects through the real file system."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from frumitcache.errors import DigestMismatchError, NotInStoreError, StoreError
from frumitcache.store import Store

from .conftest import CHUNK, blob, sha, tmp_files


async def write_object(store: Store, key: str, data: bytes, step: int = 1000) -> bytes:
    async with store.open_writer(key) as w:
        for i in range(0, len(data), step):
            await w.write(data[i : i + step])
        m = await w.finish()
    return m.digest


async def read_all(store: Store, key: str | bytes, offset: int = 0) -> bytes:
    async with store.open_reader(key, offset=offset) as r:
        return await r.readall()


async def test_write_then_read_back(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(3 * CHUNK + 123)
        async with store.open_writer("http://o/a", expected_digest=sha(data)) as w:
            await w.write(data[:10])
            assert w.offset == 10
            await w.write(data[10:])
            manifest = await w.finish()
        assert manifest.digest == sha(data)
        assert manifest.size == len(data)
        assert manifest.chunk_size == CHUNK
        assert len(manifest.chunks) == 4
        assert manifest.chunk_len(3) == 123
        for i, c in enumerate(manifest.chunks):
            part = data[i * CHUNK : (i + 1) * CHUNK]
            assert c == sha(part)
            assert store.chunk_path(c).read_bytes() == part
            assert store.chunk_path(c).name == c.hex()
            assert store.chunk_path(c).parent.name == c.hex()[:2]
        assert store.lookup("http://o/a") == manifest
        assert store.lookup(manifest.digest) == manifest
        assert store.lookup("sha256:" + manifest.digest.hex()) == manifest
        assert store.lookup("http://o/other") is None
        assert await read_all(store, "http://o/a") == data
        assert await read_all(store, manifest.digest) == data
        assert tmp_files(store.root) == []


async def test_read_from_offset(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(2 * CHUNK + 77, seed=1)
        await write_object(store, "k", data)
        for offset in (0, 1, CHUNK - 1, CHUNK, CHUNK + 5, len(data) - 1, len(data)):
            assert await read_all(store, "k", offset) == data[offset:]
        with pytest.raises(StoreError, match="past the end"):
            await read_all(store, "k", len(data) + 1)


async def test_empty_and_exact_multiple_objects(store: Store) -> None:
    with trio.fail_after(10):
        async with store.open_writer("empty") as w:
            m = await w.finish()
        assert (m.size, m.chunks, m.digest) == (0, (), hashlib.sha256(b"").digest())
        assert await read_all(store, "empty") == b""
        data = blob(2 * CHUNK, seed=2)
        await write_object(store, "even", data)
        m2 = store.lookup("even")
        assert m2 is not None
        assert len(m2.chunks) == 2
        assert m2.chunk_len(1) == CHUNK
        assert await read_all(store, "even") == data


async def test_unknown_key_raises(store: Store) -> None:
    with pytest.raises(NotInStoreError):
        async with store.open_reader("nope"):
            pass  # pragma: no cover


async def test_digest_mismatch_stores_nothing(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(3 * CHUNK + 5, seed=3)
        w = store.open_writer("bad", expected_digest=sha(b"something else"))
        await w.write(data)
        with pytest.raises(DigestMismatchError, match="nothing stored"):
            await w.finish()
        assert store.lookup("bad") is None
        assert store.partial_chunks("bad") == []
        stats = store.stats()
        assert (stats.objects, stats.partial_objects, stats.chunks) == (0, 0, 0)
        assert stats.bytes_used == 0
        assert list((store.root / "chunks").rglob("*")) == [
            p for p in (store.root / "chunks").rglob("*") if p.is_dir()
        ]
        # The key is free again and a correct write succeeds.
        await write_object(store, "bad", data)
        assert store.lookup("bad") is not None


async def test_size_mismatch_stores_nothing(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(CHUNK + 5, seed=4)
        w = store.open_writer("short", expected_size=len(data) + 1)
        await w.write(data)
        with pytest.raises(DigestMismatchError):
            await w.finish()
        w = store.open_writer("long", expected_size=len(data) - 1)
        with pytest.raises(DigestMismatchError, match="more than"):
            await w.write(data)
        assert store.stats().chunks == 0
        assert store.lookup("short") is None
        assert store.lookup("long") is None


async def test_mismatch_keeps_chunks_other_objects_share(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(2 * CHUNK, seed=5)
        good = await write_object(store, "good", data)
        w = store.open_writer("bad", expected_digest=sha(b"x"))
        await w.write(data + b"tail")
        with pytest.raises(DigestMismatchError):
            await w.finish()
        assert await read_all(store, good) == data
        assert store.stats().chunks == 2


async def test_abort_then_resume(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(5 * CHUNK + 99, seed=6)
        w = store.open_writer("url", expected_digest=sha(data))
        await w.write(data[: 2 * CHUNK + 100])  # two whole chunks, 100 bytes buffered
        await w.abort()
        assert store.lookup("url") is None
        assert len(store.partial_chunks("url")) == 2
        with pytest.raises(StoreError):
            await w.write(b"more")

        w2 = store.open_writer("url", expected_digest=sha(data))
        # The 100 buffered bytes were kept in memory: the resume starts after them.
        assert w2.offset == 2 * CHUNK + 100
        assert w2.chunks == [sha(data[:CHUNK]), sha(data[CHUNK : 2 * CHUNK])]
        await w2.write(data[w2.offset :])
        m = await w2.finish()
        assert m.digest == sha(data)
        assert await read_all(store, "url") == data
        assert store.partial_chunks("url") == []
        assert store.stats().partial_objects == 0


async def test_an_aborted_writers_tail_goes_to_the_next_writer_only_where_it_fits(
    store: Store,
) -> None:
    """A fenced origin fetch keeps the bytes of its unfinished chunk for the next writer of
    the key (its Range resume starts at that byte); a discard, a different expectation, a
    whole chunk added in its place (pulled from a holder) or a failed write drop them."""
    with trio.fail_after(10):
        data = blob(3 * CHUNK + 7, seed=20)
        w = store.open_writer("url", expected_digest=sha(data))
        await w.write(data[: CHUNK + 300])
        await w.abort()
        assert w.offset == CHUNK + 300  # what the origin client records as its resume point
        # Taken back once: a writer that aborts without writing hands it on again.
        w = store.open_writer("url", expected_digest=sha(data))
        assert w.offset == CHUNK + 300
        await w.abort()
        # A whole chunk pulled from a holder supersedes the bytes kept of it.
        w = store.open_writer("url", expected_digest=sha(data))
        whole = await write_object(store, "other", data[CHUNK : 2 * CHUNK])
        assert whole == sha(data[CHUNK : 2 * CHUNK])
        await w.add_chunk(sha(data[CHUNK : 2 * CHUNK]))
        assert w.offset == 2 * CHUNK
        await w.write(data[2 * CHUNK : 2 * CHUNK + 5])
        with pytest.raises(StoreError, match="add_chunk after a partial write"):
            await w.add_chunk(sha(data[:CHUNK]))  # bytes written here are not superseded
        w = store.open_writer("url", expected_digest=sha(data))
        assert w.offset == 2 * CHUNK  # the failed writer kept no tail
        await w.write(data[2 * CHUNK : 2 * CHUNK + 9])
        await w.discard()
        assert store.open_writer("url", expected_digest=sha(data)).offset == 0

        # Another expectation starts over without the tail.
        w = store.open_writer("v", expected_digest=sha(data))
        await w.write(data[:50])
        await w.abort()
        assert store.open_writer("v", expected_digest=sha(b"other")).offset == 0


async def test_kept_tails_are_bounded(store: Store) -> None:
    with trio.fail_after(10):
        for i in range(5):
            w = store.open_writer(f"k{i}")
            await w.write(blob(CHUNK // 2, seed=30 + i))
            await w.abort()
        offsets = [store.open_writer(f"k{i}").offset for i in range(5)]
        assert offsets == [0, 0, 0, CHUNK // 2, CHUNK // 2]  # the newest MAX_TAILS (2) kept


async def test_resume_survives_reopen(store_dir: Path) -> None:
    with trio.fail_after(10):
        data = blob(4 * CHUNK + 1, seed=7)
        with Store.open(store_dir, max_bytes=1 << 30, chunk_size=CHUNK) as s:
            w = s.open_writer("url")
            await w.write(data[: 3 * CHUNK + 7])
            await w.abort()
        with Store.open(store_dir, max_bytes=1 << 30, chunk_size=CHUNK) as s:
            assert s.lookup("url") is None
            w = s.open_writer("url", expected_size=len(data))
            assert w.offset == 3 * CHUNK
            await w.write(data[w.offset :])
            m = await w.finish()
            assert m.digest == sha(data)
            assert await read_all(s, "url") == data


async def test_resume_with_different_expectation_starts_over(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(3 * CHUNK, seed=8)
        w = store.open_writer("url", expected_digest=sha(data))
        await w.write(data[: 2 * CHUNK])
        await w.abort()
        other = blob(CHUNK + 1, seed=9)
        w2 = store.open_writer("url", expected_digest=sha(other))
        assert w2.offset == 0
        await w2.write(other)
        assert (await w2.finish()).digest == sha(other)
        assert store.stats().chunks == 2  # the abandoned partial's chunks are gone


async def test_discard_drops_partial(store: Store) -> None:
    with trio.fail_after(10):
        w = store.open_writer("url")
        await w.write(blob(3 * CHUNK, seed=10))
        await w.discard()
        assert store.partial_chunks("url") == []
        assert store.stats().chunks == 0
        assert store.open_writer("url").offset == 0


async def test_one_writer_per_key(store: Store) -> None:
    w = store.open_writer("url")
    with pytest.raises(StoreError, match="already being written"):
        store.open_writer("url")
    await w.abort()
    store.open_writer("url")


async def test_same_bytes_two_keys_one_object(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(3 * CHUNK + 10, seed=11)
        d1 = await write_object(store, "http://mirror-a/x.deb", data)
        used = store.stats().bytes_used
        d2 = await write_object(store, "http://mirror-b/x.deb", data)
        assert d1 == d2
        stats = store.stats()
        assert stats.objects == 1
        assert stats.bytes_used == used == len(data)
        store.map_key("http://mirror-c/x.deb", d1)
        assert store.lookup("http://mirror-c/x.deb") == store.lookup("http://mirror-a/x.deb")
        with pytest.raises(NotInStoreError):
            store.map_key("k", sha(b"not stored"))


async def test_objects_share_chunks(store: Store) -> None:
    with trio.fail_after(10):
        common = blob(2 * CHUNK, seed=12)
        await write_object(store, "a", common + b"A")
        await write_object(store, "b", common + b"BB")
        stats = store.stats()
        assert stats.objects == 2
        assert stats.chunks == 4  # two shared full chunks plus two tails
        assert stats.bytes_used == 2 * CHUNK + 3


async def test_key_meta(store: Store) -> None:
    with trio.fail_after(10):
        assert store.key_meta("u") == {}
        store.set_key_meta("u", {"etag": '"abc"', "content-type": "application/x-deb"})
        await write_object(store, "u", b"hello")
        assert store.key_meta("u") == {"etag": '"abc"', "content-type": "application/x-deb"}
        store.set_key_meta("u", {"etag": '"def"'})
        assert store.key_meta("u") == {"etag": '"def"'}
        assert store.lookup("u") is not None


async def test_put_adopt_and_add_chunk(store: Store) -> None:
    with trio.fail_after(10):
        data = blob(2 * CHUNK + 50, seed=13)
        parts = [data[:CHUNK], data[CHUNK : 2 * CHUNK], data[2 * CHUNK :]]
        await store.put_chunk(parts[0], sha(parts[0]))
        with pytest.raises(DigestMismatchError):
            await store.put_chunk(parts[1], sha(parts[0]))
        assert not store.has_chunk(sha(parts[1]))
        # A swarm download lands in tmp_dir and is renamed in.
        landed = store.tmp_dir / "download"
        landed.write_bytes(parts[1])
        await store.adopt_chunk_file(landed, sha(parts[1]))
        assert not landed.exists()
        wrong = store.tmp_dir / "wrong"
        wrong.write_bytes(b"garbage")
        with pytest.raises(DigestMismatchError):
            await store.adopt_chunk_file(wrong, sha(parts[2]))
        assert wrong.exists()
        wrong.unlink()
        await store.put_chunk(parts[2], sha(parts[2]))
        assert await store.read_chunk(sha(parts[1])) == parts[1]

        w = store.open_writer("sha256:" + sha(data).hex(), expected_digest=sha(data))
        with pytest.raises(NotInStoreError):
            await w.add_chunk(sha(b"absent"))
        w = store.open_writer("sha256:" + sha(data).hex(), expected_digest=sha(data))
        await w.add_chunk(sha(parts[0]))
        await w.add_chunk(sha(parts[1]))
        await w.add_chunk(sha(parts[2]))
        with pytest.raises(StoreError, match="short chunk"):
            await w.add_chunk(sha(parts[0]))
        w = store.open_writer("sha256:" + sha(data).hex(), expected_digest=sha(data))
        assert w.offset == len(data)  # resumed: all three chunks, the last one short
        m = await w.finish()
        assert m.digest == sha(data)
        assert await read_all(store, sha(data)) == data


async def test_chunk_methods_take_raw_digests_only(store: Store) -> None:
    """A digest is 32 raw bytes inside the package; its hex is only the chunk file's name.
    A hex string (the old second form) is refused, not converted."""
    with trio.fail_after(10):
        data = b"raw chunk"
        await store.put_chunk(data, sha(data))
        assert store.chunk_path(sha(data)).name == sha(data).hex()
        assert await store.read_chunk(sha(data)) == data
        for bad in (sha(data).hex(), "zz", b"short"):
            with pytest.raises(ValueError, match="32 bytes"):
                store.has_chunk(bad)  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="32 bytes"):
                await store.read_chunk(bad)  # type: ignore[arg-type]


async def test_chunk_root(store: Store) -> None:
    with trio.fail_after(10):
        data = b"chunk"
        await store.put_chunk(data, sha(data))
        assert store.chunk_root(sha(data)) is None
        store.set_chunk_root(sha(data), b"r" * 32)
        assert store.chunk_root(sha(data)) == b"r" * 32
        with pytest.raises(NotInStoreError):
            store.set_chunk_root(sha(b"absent"), b"r" * 32)
        with pytest.raises(NotInStoreError):
            store.chunk_path(sha(b"absent"))


async def test_second_process_cannot_open(store: Store) -> None:
    with pytest.raises(StoreError, match="in use"):
        Store.open(store.root, max_bytes=1 << 30, chunk_size=CHUNK)


async def test_adopt_runs_the_callers_check_and_records_the_root(store: Store) -> None:
    """The swarm's check (xxh3 read-back, root) runs in the adoption's own worker thread:
    a file it rejects (a hostile holder's bytes) is neither adopted nor given a root."""
    with trio.fail_after(10):
        good, bad = b"checked chunk", b"bytes the check rejects"
        landed = store.tmp_dir / "checked"
        landed.write_bytes(good)
        seen: list[bytes] = []

        def check(path: Path) -> bytes:
            seen.append(path.read_bytes())
            return b"x" * 8

        await store.adopt_chunk_file(landed, sha(good), verify=check, root=b"r" * 32)
        assert seen == [good]
        assert not landed.exists()
        assert store.chunk_root(sha(good)) == b"r" * 32

        hostile = store.tmp_dir / "hostile"
        hostile.write_bytes(bad)

        def reject(path: Path) -> bytes:
            raise DigestMismatchError(f"{path} misses the root")

        with pytest.raises(DigestMismatchError):
            await store.adopt_chunk_file(hostile, sha(bad), verify=reject, root=b"r" * 32)
        assert hostile.exists()
        assert not store.has_chunk(sha(bad))
        with pytest.raises(ValueError, match="32 bytes"):
            await store.adopt_chunk_file(hostile, sha(bad), verify=check, root=b"short")
