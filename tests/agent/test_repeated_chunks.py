"""Objects whose chunk lists name one digest many times (zeros in a disk image, a repeated
block), through real agents: a loopback site of three agent processes, a real origin. The
seeder fetches the object once while a member cuts through, the other member pulls it from the
site afterwards; every copy is the origin's bytes, each store holds each distinct chunk once and
each member took each distinct chunk over the LAN once. Both transports: peer HTTP (chunks up
to ``swarm.small_chunk_bytes``) and libtorrent."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, wait_for_seeder

pytestmark = pytest.mark.slow

KiB = 1024
CHUNK = 64 * KiB


def repeated_object() -> tuple[bytes, int]:
    """Zero chunks at most indexes, two drawn chunks each at several (runs of the same digest
    longer than ``parallel_chunks``, and the same digest at neighbouring indexes), and a short
    zero tail (another digest: its size differs). Returns the bytes and their distinct chunks."""
    zero, a, b = bytes(CHUNK), os.urandom(CHUNK), os.urandom(CHUNK)
    layout = [a, zero, zero, a, b, zero, a, *[zero] * 40, b, b, a, *[zero] * 20, b]
    rng = random.Random(14)
    layout += [rng.choice((zero, zero, a, b)) for _ in range(30)]
    data = b"".join(layout) + bytes(CHUNK // 2)
    return data, 4


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    # 2 MiB/s: the first member pulls while the seeder is still fetching (cut-through).
    server = OriginServer(rate=2 << 20)
    await nursery.start(server.serve, loopback_address())
    return server


@pytest.mark.parametrize("transport", ["peer-http", "libtorrent"])
async def test_an_object_of_repeated_chunks_is_fetched_once_and_stored_once(
    origin: OriginServer, tmp_path: Path, transport: str
) -> None:
    data, distinct = repeated_object()
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/disk.img", data)
    url = origin.url("/disk.img")
    settings: dict[str, dict[str, object]] = {"store": {"chunk_size": CHUNK}}
    if transport == "libtorrent":
        settings["swarm"] = {"small_chunk_bytes": 16 * KiB}
    site = LoopbackSite(tmp_path / "site", 3, settings=settings)
    try:
        await site.start()
        seeder_name = await wait_for_seeder(site)
        views = [await a.site_status() for a in site.agents]
        seeder = next(
            a for a, v in zip(site.agents, views, strict=True) if v["node"] == seeder_name
        )
        first, second = [a for a in site.agents if a is not seeder]
        with trio.fail_after(120):
            got = await pull(first, url, digest, tmp_path / "first.img")
        assert got.returncode == 0, (got.stderr, first.log(), seeder.log())
        assert (tmp_path / "first.img").read_bytes() == data
        # The second member from the site, once into a file (descriptors passed) and once as
        # Data frames on stdout; the seeder from its own store.
        with trio.fail_after(120):
            got = await pull(second, url, digest, tmp_path / "second.img")
        assert got.returncode == 0, (got.stderr, second.log(), seeder.log())
        assert " from site" in got.stderr.decode(), got.stderr
        assert (tmp_path / "second.img").read_bytes() == data
        # The zero chunks are holes in both copies (the stores keep them as holes).
        zeros = sum(data[i : i + CHUNK] == bytes(CHUNK) for i in range(0, len(data), CHUNK))
        for name in ("first.img", "second.img"):
            used = os.stat(tmp_path / name).st_blocks * 512
            assert used <= len(data) - zeros * CHUNK + CHUNK, (name, used, len(data))
        with trio.fail_after(60):
            got = await second.pull(url, "--sha256", digest, "-o", "-")
        assert (got.returncode, got.stdout) == (0, data), got.stderr
        with trio.fail_after(60):
            streamed = b""
            async with AgentClient(seeder.socket).stream(url) as body:
                async for piece in body:
                    streamed += piece
        assert streamed == data
        assert origin.stats.requests["/disk.img"] == 1
        assert origin.stats.bytes_sent["/disk.img"] == len(data)
        held = 3 * CHUNK + CHUNK // 2
        for agent in site.agents:
            status = await AgentClient(agent.socket).status()
            assert status.store["chunks"] == distinct, (agent.address, status.store)
            assert status.store["bytes_used"] == held, (agent.address, status.store)
            if agent is not seeder:
                # Each distinct chunk crossed the LAN to each member once (one digest in
                # flight at many indexes was pulled up to parallel_chunks times: 2.4x).
                moved = int(status.site.get("peer_http_fetched") or 0)
                moved += int(status.site.get("swarm_downloaded") or 0)
                assert moved == held, (agent.address, status.site)
    finally:
        site.kill()
