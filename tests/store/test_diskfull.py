"""Disk full: a store on a small tmpfs reports it clearly and keeps serving what it had."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from frumitcache.errors import StoreFullError
from frumitcache.store import Store

from .conftest import blob, sha
from .test_objects import read_all, write_object

CHUNK = 64 * 1024
MiB = 1024 * 1024

pytestmark = pytest.mark.root


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount an 8 MiB tmpfs")
    mount = tmp_path / "disk"
    mount.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], check=True, timeout=30
    )
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True, timeout=30)


def chunk_files(root: Path) -> list[Path]:
    return [p for p in (root / "chunks").rglob("*") if p.is_file()]


async def test_enospc_mid_object(small_disk: Path) -> None:
    """With no free-space floor the write runs into the real ENOSPC."""
    root = small_disk / "store"
    with trio.fail_after(30):
        with Store.open(root, max_bytes=1 << 30, chunk_size=CHUNK) as store:
            kept = blob(2 * MiB + 5, seed=1)
            kept_digest = await write_object(store, "kept", kept, step=100_000)
            big = blob(16 * MiB, seed=2)
            w = store.open_writer("big", expected_digest=sha(big))

            async def write_big() -> None:
                for i in range(0, len(big), 256 * 1024):
                    await w.write(big[i : i + 256 * 1024])

            with pytest.raises(StoreFullError, match="no room") as info:
                await write_big()
            assert str(small_disk) in str(info.value) or "disk is full" in str(info.value)
            assert w.closed
            assert store.lookup("big") is None
            assert store.lookup(sha(big)) is None
            assert os.listdir(root / "tmp") == []
            # What it had is still served; the partial goes away when discarded.
            assert await read_all(store, "kept") == kept
            await w.discard()
            assert store.partial_chunks("big") == []
            assert sorted(p.name for p in chunk_files(root)) == sorted(
                c.hex()
                for c in set(store.lookup(kept_digest).chunks)  # type: ignore[union-attr]
            )
            # And it still takes new objects that fit.
            small = blob(100_000, seed=3)
            await write_object(store, "small", small)
        with Store.open(root, max_bytes=1 << 30, chunk_size=CHUNK) as store:
            assert store.recovery.rows_dropped == 0
            assert (await store.scrub()).damage == 0
            assert await read_all(store, "kept") == kept
            assert await read_all(store, "small") == small
            assert store.lookup("big") is None


async def test_free_space_floor_evicts_then_refuses(small_disk: Path) -> None:
    """With a floor the store evicts to keep it, and refuses cleanly when only pinned or
    in-use objects are left."""
    root = small_disk / "store"
    with (
        trio.fail_after(30),
        Store.open(root, max_bytes=1 << 30, chunk_size=CHUNK, min_free_bytes=1 * MiB) as store,
    ):
        pinned = blob(2 * MiB, seed=4)
        store.pin(await write_object(store, "pinned", pinned, step=100_000))
        old = blob(2 * MiB, seed=5)
        await write_object(store, "old", old, step=100_000)
        # 4 MiB more does not fit next to both: the unpinned one is evicted to make room.
        newer = blob(3 * MiB, seed=6)
        await write_object(store, "newer", newer, step=100_000)
        assert store.lookup("old") is None
        async with store.open_reader("newer") as reader:
            w = store.open_writer("huge")
            with pytest.raises(StoreFullError, match="nothing left to evict"):
                await w.write(blob(6 * MiB, seed=7))
            await w.discard()
            assert await reader.readall() == newer
        assert await read_all(store, "pinned") == pinned
        assert store.stats().free_disk_bytes >= 1 * MiB
        assert os.listdir(root / "tmp") == []
