"""open() after a crash: temp files, missing or short chunk files, orphan chunk files."""

from __future__ import annotations

from pathlib import Path

import trio

from frumitcache.store import Store

from .conftest import CHUNK, blob, sha
from .test_objects import read_all, write_object


def reopen(root: Path) -> Store:
    return Store.open(root, max_bytes=1 << 30, chunk_size=CHUNK)


async def test_clean_reopen_repairs_nothing(store_dir: Path) -> None:
    with trio.fail_after(10):
        with reopen(store_dir) as s:
            await write_object(s, "a", blob(3 * CHUNK))
        with reopen(store_dir) as s:
            assert s.recovery.temp_files_removed == 0
            assert s.recovery.rows_dropped == 0
            assert s.recovery.orphans_adopted == 0
            assert await read_all(s, "a") == blob(3 * CHUNK)


async def test_recovery_after_crash_debris(store_dir: Path) -> None:
    with trio.fail_after(10):
        a = blob(3 * CHUNK, seed=1)
        b = blob(2 * CHUNK, seed=2)
        with reopen(store_dir) as s:
            ma = s.lookup(await write_object(s, "a", a))
            mb = s.lookup(await write_object(s, "b", b))
            assert ma is not None
            assert mb is not None
            (s.tmp_dir / "half-written.chunk").write_bytes(b"partial")
            (s.tmp_dir / "swarm").mkdir()
            (s.tmp_dir / "swarm" / "download").write_bytes(b"partial")
            s.chunk_path(ma.chunks[1]).unlink()  # a row without its file
            short = s.chunk_path(mb.chunks[0])
            short.write_bytes(short.read_bytes()[:10])  # a file of the wrong length
        # Files renamed into place whose rows never committed.
        good = blob(CHUNK, seed=3)
        orphan = store_dir / "chunks" / sha(good).hex()[:2] / sha(good).hex()
        orphan.write_bytes(good)
        liar = store_dir / "chunks" / ("ab" + "0" * 62)[:2] / ("ab" + "0" * 62)
        liar.write_bytes(b"not what the name says")

        with reopen(store_dir) as s:
            assert s.recovery.temp_files_removed == 2
            assert list(s.tmp_dir.iterdir()) == []
            assert s.recovery.rows_dropped == 2
            assert s.recovery.orphans_adopted == 1
            assert s.recovery.orphans_deleted == 1
            assert not liar.exists()
            assert s.has_chunk(sha(good))
            assert await s.read_chunk(sha(good)) == good
            assert s.lookup("a") is None
            assert s.lookup("b") is None
            assert s.partial_chunks("a") == [ma.chunks[0]]  # the good prefix, resumable
            assert s.partial_chunks("b") == []
            assert (await s.scrub()).damage == 0
            w = s.open_writer("a", expected_digest=sha(a))
            assert w.offset == CHUNK
            await w.write(a[CHUNK:])
            await w.finish()
            assert await read_all(s, "a") == a
