"""A warm herd: the object is complete on the seeder and every member asks for it at once.

The seeder's LAN port is the site's scarce resource. Each member takes directly (peer HTTP)
only the chunks assigned to it and trades the rest through libtorrent, so the seeder sends
about one copy, not one per member (a star, which made the warm herd 2.5x slower at N=8).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

from .test_site_herd import pull, wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024


async def test_warm_herd_takes_about_one_copy_from_the_seeder(tmp_path: Path) -> None:
    data = os.urandom(32 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin = OriginServer()
    # A trade that makes no progress for seeder_grace_s is widened to the seeder; under a
    # loaded CI box the default 3 s widened enough chunks to pass the bound below (1.77 copies
    # once). A long grace keeps this test about the assignment, not about the box's load.
    site = LoopbackSite(
        tmp_path / "site",
        4,
        priorities=[10, 0, 0, 0],
        settings={"swarm": {"seeder_grace_s": 20.0}},
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(origin.serve, loopback_address())
        origin.add("/warm.bin", data)
        url = origin.url("/warm.bin")
        try:
            await site.start()
            seeder_name = await wait_for_seeder(site)
            by_name = {f"pi-{i:02d}": a for i, a in enumerate(site.agents)}
            seeder = by_name[seeder_name]
            members = [a for n, a in by_name.items() if n != seeder_name]
            with trio.fail_after(120):
                first = await pull(seeder, url, digest, tmp_path / "seeder.bin")
                assert first.returncode == 0, first.stderr
                results = {}

                async def one(i: int, agent: AgentProcess) -> None:
                    results[i] = await pull(agent, url, digest, tmp_path / f"out{i}")

                async with trio.open_nursery() as pulls:
                    for i, agent in enumerate(members):
                        pulls.start_soon(one, i, agent)
                view = (await AgentClient(seeder.socket).status()).site
            for i, result in results.items():
                assert result.returncode == 0, (result.stderr, members[i].log())
                assert (tmp_path / f"out{i}").read_bytes() == data
            assert origin.stats.requests["/warm.bin"] == 1
            sent = int(view["peer_http_served"]) + int(view.get("swarm_uploaded", 0))
            # Three members, one copy assigned among them; slack for a chunk a stuck trade
            # widened to the seeder. A star would be three copies.
            assert sent <= 1.75 * len(data), (sent / len(data), view)
        finally:
            site.kill()
            nursery.cancel_scope.cancel()
