"""A warm herd: the object is complete on the seeder and every member asks for it at once.

The seeder's LAN port is the site's scarce resource. Each member takes directly (peer HTTP)
only the chunks assigned to it and trades the rest through libtorrent, so the seeder sends
about one copy, not one per member (a star, which made the warm herd 2.5x slower at N=8).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess

from .test_site_herd import pull
from .warm_site import warm_site

pytestmark = pytest.mark.slow


async def test_warm_herd_takes_about_one_copy_from_the_seeder(tmp_path: Path) -> None:
    # A trade that makes no progress for seeder_grace_s is widened to the seeder; under a
    # loaded CI box the default 3 s widened enough chunks to pass the bound below (1.77 copies
    # once). A long grace keeps this test about the assignment, not about the box's load.
    async with warm_site(tmp_path, {"swarm": {"seeder_grace_s": 20.0}}) as warm:
        results = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, warm.url, warm.digest, tmp_path / f"out{i}")

        with trio.fail_after(120):
            async with trio.open_nursery() as pulls:
                for i, agent in enumerate(warm.members):
                    pulls.start_soon(one, i, agent)
            view = (await AgentClient(warm.seeder.socket).status()).site
        for i, result in results.items():
            assert result.returncode == 0, (result.stderr, warm.members[i].log())
            assert (tmp_path / f"out{i}").read_bytes() == warm.data
        assert warm.origin.stats.requests[warm.path] == 1
        sent = int(view["peer_http_served"]) + int(view.get("swarm_uploaded", 0))
        # Three members, one copy assigned among them; slack for chunks a stuck trade
        # widened to the seeder (a fresh-clone CI run on the loaded 2-core box: 1.875 copies,
        # 15 chunks of 8, against the 1.75 this allowed). A star would be three copies.
        assert sent <= 2.0 * len(warm.data), (sent / len(warm.data), view)
