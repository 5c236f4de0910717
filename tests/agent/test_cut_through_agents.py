"""Cut-through between real agents: a member's client has its first bytes while the seeder is
still fetching the object from a slow origin (not after the whole object), through the
descriptor path of ``pull``."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    # 2 MiB/s: a 16 MiB object takes about 8 s to leave the origin.
    server = OriginServer(rate=2 * MiB)
    await nursery.start(server.serve, loopback_address())
    return server


async def test_a_members_client_gets_bytes_before_the_seeders_fetch_ends(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(16 * MiB)
    origin.add("/slow.bin", data)
    site = LoopbackSite(tmp_path / "site", 2)
    try:
        await site.start()
        seeder = await wait_for_seeder(site)
        member = next(a for a in site.agents if a.settings["node"]["name"] != seeder)
        at_first_byte: list[int] = []

        def advance(n: int) -> None:
            if not at_first_byte:
                at_first_byte.append(origin.stats.bytes_sent["/slow.bin"])

        out = tmp_path / "got.bin"
        fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            with trio.fail_after(120):
                done = await AgentClient(member.socket).pull_into(
                    origin.url("/slow.bin"), fd, advance=advance
                )
        finally:
            os.close(fd)
        assert out.read_bytes() == data
        assert done.digest == hashlib.sha256(data).digest()
        assert done.source == "site"
        # The member's client had bytes while at least a quarter of the object had not yet
        # left the origin (one 4 MiB chunk-time plus the site's hand-off, not the whole).
        assert at_first_byte, "no bytes arrived"
        assert at_first_byte[0] <= len(data) * 3 // 4, (at_first_byte, len(data))
        assert origin.stats.requests["/slow.bin"] == 1
    finally:
        site.kill()
