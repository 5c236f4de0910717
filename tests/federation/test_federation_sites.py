"""Federation through real agent processes on loopback: a core site (2 agents) with the origin
behind it and two edge sites (2 agents each), every site with its own site key. The origin's
byte counters are the ground truth for "the origin sends each byte once for the federation"."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, wait_for_seeder
from tests.federation.sites import fed_site, members, new_key, uplink

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    # 6 MiB/s: a 32 MiB object takes about 5 s, long enough to pull while it is fetched.
    server = OriginServer(rate=6 * MiB)
    await nursery.start(server.serve, loopback_address())
    return server


async def pull_everywhere(
    agents: list[AgentProcess], url: str, digest: str, out: Path
) -> dict[int, subprocess.CompletedProcess[bytes]]:
    results: dict[int, subprocess.CompletedProcess[bytes]] = {}

    async def one(i: int, agent: AgentProcess) -> None:
        results[i] = await pull(agent, url, digest, out / f"out{i}")

    async with trio.open_nursery() as nursery:
        for i, agent in enumerate(agents):
            nursery.start_soon(one, i, agent)
    return results


async def test_every_agent_of_every_site_pulls_and_the_origin_sends_once(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(32 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/release.bin", data)
    key = new_key()
    core = fed_site(tmp_path / "core", 2, key)
    edges = [fed_site(tmp_path / f"edge{i}", 2, key, parents=members(core)) for i in range(2)]
    sites = [core, *edges]
    try:
        for site in sites:
            await site.start()
        for site in sites:
            await wait_for_seeder(site)
        agents = [a for site in sites for a in site.agents]
        with trio.fail_after(90):
            results = await pull_everywhere(agents, origin.url("/release.bin"), digest, tmp_path)
        logs = [a.log() for a in agents]
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs[i])
            assert (tmp_path / f"out{i}").read_bytes() == data
        assert origin.stats.bytes_sent["/release.bin"] == len(data), origin.stats.requests
        # Each edge took the object from the core: its uplink carried federation bytes, no
        # origin bytes.
        for edge in edges:
            counters = [await uplink(a) for a in edge.agents]
            assert sum(c["origin_bytes"] for c in counters) == 0, counters
            assert sum(c["federation_bytes"] for c in counters) == len(data), counters
    finally:
        for site in sites:
            site.kill()
