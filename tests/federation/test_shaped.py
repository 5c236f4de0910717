"""The federation in network namespaces (root): a core site with the origin beyond the backbone
and two edge sites, each behind its own shaped uplink, addressed from an IPv6 ULA prefix and
IPv4 (one edge names the core's agents by IPv6, the other by IPv4). Every Pi of every site
pulls the same object: the origin sends it once."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from bench._netfed import ShapedFederation, run_in
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
PORT = 8080


def origin_stats(fed: ShapedFederation) -> dict[str, Any]:
    probe = f"import urllib.request as u; print(u.urlopen('http://{fed.origin_v4}:{PORT}/_stats').read().decode())"
    result = run_in(fed.origin_ns, [sys.executable, "-c", probe])
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def site_agents(
    fed: ShapedFederation, s: int, work: Path, key: str, parents: list[str]
) -> list[AgentProcess]:
    directory = work / f"site{s}"
    directory.mkdir(parents=True)
    site_key = directory / "site.key"
    site_key.write_text(secrets.token_hex(32) + "\n")
    site_key.chmod(0o600)
    addresses = [fed.pi_v4(s, i) for i in range(fed.sites[s])]
    agents = []
    for i, address in enumerate(addresses):
        settings: dict[str, dict[str, Any]] = {
            "node": {"name": f"s{s}-pi{i}"},
            "site": {
                **SITE_TIMERS,
                "name": f"site{s}",
                "peers": [a for a in addresses if a != address],
                "discovery": False,
                "key_file": str(site_key),
            },
            "federation": {"key": key, "listen": "*", "parents": parents},
            "origin": {"allow": [f"{fed.origin_v4}:*"]},
        }
        agents.append(
            AgentProcess(
                directory / f"pi{i}",
                address=address,
                settings=settings,
                prefix=fed.prefix(fed.pi_ns(s, i)),
            )
        )
    return agents


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
        # Popen, as AgentProcess does: the finally block kills and reaps it by pid.
        origin = subprocess.Popen(  # noqa: ASYNC220
            [
                *fed.prefix(fed.origin_ns),
                sys.executable,
                "-m",
                "frumitcache.testing.origin",
                "--address",
                fed.origin_v4,
                "--port",
                str(PORT),
                "--dir",
                str(www),
            ],
            stdout=subprocess.PIPE,
        )
        assert origin.stdout is not None
        assert json.loads(origin.stdout.readline())["port"] == PORT
        key = new_key()
        core = [f"[{fed.pi_v6(0, i)}]:3147" for i in range(2)]  # by IPv6 ...
        core_v4 = [f"{fed.pi_v4(0, i)}:3147" for i in range(2)]  # ... and by IPv4
        sites = [
            site_agents(fed, 0, tmp_path, key, []),
            site_agents(fed, 1, tmp_path, key, core),
            site_agents(fed, 2, tmp_path, key, core_v4),
        ]
        agents = [a for site in sites for a in site]
        async with trio.open_nursery() as nursery:
            for agent in agents:
                nursery.start_soon(agent.start)
        url = f"http://{fed.origin_v4}:{PORT}/release.bin"
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
