"""A corrupt holder between real agents: a member whose chunk files rotted on disk after they
were verified must not make another member store or serve bad bytes. The other member gets
the right bytes from another holder (here the seeder), never from the rotten files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB


def _chunk_files(store: Path, digests: list[str]) -> dict[str, Path]:
    found = {p.name: p for p in store.rglob("*") if p.is_file() and p.name in digests}
    assert sorted(found) == sorted(digests), (sorted(found), digests)
    return found


def _rot(path: Path) -> None:
    """Flip a byte in every 16 KiB block: whatever part is served, it is wrong."""
    rotten = bytearray(path.read_bytes())
    for i in range(0, len(rotten), 16 * 1024):
        rotten[i] ^= 0xFF
    path.chmod(0o644)
    path.write_bytes(bytes(rotten))


async def test_a_member_with_rotten_chunk_files_passes_on_no_bad_byte(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(3 * CHUNK)
    digest = hashlib.sha256(data).hexdigest()
    chunks = [hashlib.sha256(data[i : i + CHUNK]).hexdigest() for i in range(0, len(data), CHUNK)]
    origin.add("/rot.bin", data)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        seeder = await wait_for_seeder(site)
        rotten, asker = [a for a in site.agents if a.settings["node"]["name"] != seeder]
        with trio.fail_after(60):
            first = await pull(rotten, origin.url("/rot.bin"), digest, tmp_path / "first")
        assert first.returncode == 0, (first.stderr, rotten.log())
        # Verified and stored on the seeder and on ``rotten``; now ``rotten``'s files rot.
        rotted = _chunk_files(rotten.directory / "store", chunks)
        for path in rotted.values():
            _rot(path)
        with trio.fail_after(60):
            got = await pull(asker, origin.url("/rot.bin"), digest, tmp_path / "got")
        assert got.returncode == 0, (got.stderr, asker.log(), rotten.log())
        assert (tmp_path / "got").read_bytes() == data
        # The asker stored only good chunks, so it cannot serve bad ones either.
        for name, path in _chunk_files(asker.directory / "store", chunks).items():
            assert hashlib.sha256(path.read_bytes()).hexdigest() == name
        # The right bytes came from the site (the seeder), not from the origin again.
        assert origin.stats.requests["/rot.bin"] == 1
        assert b"from site" in got.stderr, got.stderr
        # The rotten member was asked first (a warm pull takes chunks from fellow members
        # before the seeder): the asker caught its bad bytes and told it, and it dropped the
        # rotten files it was told about (polled: the report travels on its own).
        with trio.fail_after(20):
            while all(p.exists() for p in rotted.values()):  # noqa: ASYNC110
                await trio.sleep(0.1)
    finally:
        site.kill()
