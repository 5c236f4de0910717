"""The federation in network namespaces (root): a core site with the origin beyond the backbone
and two edge sites, each behind its own shaped uplink, addressed from an IPv6 ULA prefix and
IPv4 (one edge names the core's agents by IPv6, the other by IPv4). Every Pi of every site
pulls the same object: the origin sends it once."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import trio

from bench._netfed import ORIGIN_PORT, ShapedFederation, origin_stats, site_agents, start_origin
from frumitcache.testing.agents import AgentProcess
from tests.agent.test_site_herd import pull
from tests.federation.sites import SITE_TIMERS, new_key, uplink

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("tc") is None,
        reason="shaped sites need root and iproute2 (ip, tc)",
    ),
]

MiB = 1024 * 1024
UPLINK = 20 * 1000 * 1000 // 8  # 20 Mbit/s per site, both ways


async def test_shaped_federation_the_origin_sends_once(tmp_path: Path) -> None:
    data = os.urandom(16 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    www = tmp_path / "www"
    www.mkdir()
    (www / "release.bin").write_bytes(data)
    fed = ShapedFederation([2, 2, 2], uplink=UPLINK)
    agents: list[AgentProcess] = []
    origin: subprocess.Popen[bytes] | None = None
    try:
        fed.build()
        origin = start_origin(fed, www)
        key = new_key()
        core = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(2)]  # by IPv6 ...
        core_v4 = [f"{fed.pi_v4(0, i)}:3147" for i in range(2)]  # ... and by IPv4
        sites = [
            site_agents(fed, 0, tmp_path, key, [], site=SITE_TIMERS),
            site_agents(fed, 1, tmp_path, key, core, site=SITE_TIMERS),
            site_agents(fed, 2, tmp_path, key, core_v4, site=SITE_TIMERS),
        ]
        agents = [a for site in sites for a in site]
        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent.start)
        url = f"http://{fed.origin_v4}:{ORIGIN_PORT}/release.bin"
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, url, digest, tmp_path / f"out{i}")

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                for i, agent in enumerate(agents):
                    nursery.start_soon(one, i, agent)
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, agents[i].log())
            assert (tmp_path / f"out{i}").read_bytes() == data
        stats = origin_stats(fed)
        assert stats["bytes_sent"]["/release.bin"] == len(data), stats
        for site in sites[1:]:
            counters = [await uplink(a) for a in site]
            assert sum(c["origin_bytes"] for c in counters) == 0, counters
            assert sum(c["federation_bytes"] for c in counters) == len(data), counters
        links = [k for a in sites[1] for k in (await uplink(a)) if k.startswith("federation ")]
        assert any("[fd42:98:0::" in k for k in links), links  # edge 1 went over IPv6
    finally:
        for agent in agents:
            agent.kill()
        if origin is not None:
            origin.kill()
            origin.wait(timeout=10)
            if origin.stdout is not None:
                origin.stdout.close()
        fed.teardown()
    assert not fed.exists()
