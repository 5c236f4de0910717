"""An object of more chunks than a site frame can describe, through real agents: a loopback
site of three agent processes with 16 KiB chunks, an object of 2,560 chunks (its description
is about 90 KB: more than a UDP frame, as a 50 GiB object's is with the default 4 MiB chunks).
The seeder fetches it once, the members locate it through the seeder (the description's body
over the peer port) and pull it from the site."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, site_status

pytestmark = pytest.mark.slow

KiB = 1024
CHUNK = 16 * KiB
CHUNKS = 2560


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    server = OriginServer()
    await nursery.start(server.serve, loopback_address())
    return server


async def test_an_object_described_by_more_than_a_frame_is_located_and_fetched(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(CHUNKS * CHUNK - 100)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/many.bin", data)
    site = LoopbackSite(tmp_path / "site", 3, settings={"store": {"chunk_size": CHUNK}})
    try:
        await site.start()
        with trio.fail_after(30):
            while True:
                views = [await site_status(a) for a in site.agents]
                seeders = {v.get("seeder") for v in views}
                if (
                    len(seeders) == 1
                    and None not in seeders
                    and all(len(v["members"]) == 3 for v in views)
                ):
                    break
                await trio.sleep(0.2)
        (seeder_name,) = seeders
        members = [a for a, v in zip(site.agents, views, strict=True) if v["node"] != seeder_name]
        # One member pulls first (the seeder fetches the origin), then the other (from the site).
        for i, agent in enumerate(members):
            with trio.fail_after(120):
                result = await pull(agent, origin.url("/many.bin"), digest, tmp_path / f"out{i}")
            assert result.returncode == 0, (result.stderr, agent.log())
            assert (tmp_path / f"out{i}").read_bytes() == data
            assert " from site" in result.stderr.decode(), result.stderr
        assert origin.stats.requests["/many.bin"] == 1
        assert origin.stats.bytes_sent["/many.bin"] == len(data)
        # The descriptions went as bulk bodies over the peer ports; none was dropped.
        views = [await site_status(a) for a in site.agents]
        assert sum(int(v["bulk_out"]) for v in views) >= 2, views
        assert sum(int(v["bulk_in"]) for v in views) >= 2, views
    finally:
        site.kill()
