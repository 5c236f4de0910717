"""Real apt-get on two federated sites: a core site with the origin behind it and an edge site
whose seeder asks the core. Clients at both sites update and download every package; each .deb
leaves the origin once for the federation."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.testing.aptrepo import PACKAGES, RepoBuilder, make_client
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from tests.agent.test_site_apt import ok
from tests.agent.test_site_herd import wait_for_seeder
from tests.federation.sites import fed_site, members, new_key, uplink

pytestmark = pytest.mark.slow

ALL = tuple(sorted(PACKAGES))


async def test_apt_get_on_two_sites_each_deb_leaves_the_origin_once(
    repo_builder: RepoBuilder, tmp_path: Path, nursery: trio.Nursery
) -> None:
    root = tmp_path / "origin"
    repo_builder.publish(root, dict.fromkeys(ALL, "1.0"))
    origin = OriginServer(root)
    origin_address = loopback_address()
    port = await nursery.start(origin.serve, origin_address)
    authority = f"{origin_address}:{port}"
    key = new_key()
    apt = {"enabled": True, "allowed_hosts": [authority], "port": 3142}
    core = fed_site(tmp_path / "core", 2, key)
    edge = fed_site(tmp_path / "edge", 2, key, parents=members(core))
    for site in (core, edge):
        for agent in site.agents:
            agent.settings["apt"].update(apt)
    try:
        await core.start()
        await edge.start()
        await wait_for_seeder(core)
        named = await wait_for_seeder(edge)
        edge_seeder = next(a for a in edge.agents if a.settings["node"]["name"] == named)
        # The edge first (its seeder goes through the core), then the core's own client.
        clients = [
            make_client(
                tmp_path / f"client-{name}",
                repo_builder.keyring,
                f"http://{authority}/debian",
                f"http://{agent.address}:3142",
            )
            for name, agent in (("edge", edge_seeder), ("core", core.agents[0]))
        ]
        with trio.fail_after(180):
            for client in clients:
                ok(await client.run("update"))
                ok(await client.run("download", *ALL))
        want = {p.name: p.read_bytes() for p in (root / "debian/pool/main").glob("*.deb")}
        for client in clients:
            assert client.downloaded() == want
        served = {path: n for path, n in origin.stats.requests.items() if n}
        for name in want:
            assert origin.stats.requests[f"/debian/pool/main/{name}"] == 1, served
        # The indexes too: the core asked the origin once for the federation.
        assert origin.stats.requests["/debian/dists/stable/InRelease"] == 1, served
        edge_uplink = [await uplink(a) for a in edge.agents]
        assert sum(c["federation_bytes"] for c in edge_uplink) > sum(map(len, want.values()))
        assert sum(c["origin_bytes"] for c in edge_uplink) == 0, edge_uplink
        # The edge seeder's apt door labels what it served by where it came from: the core
        # (federation), none of it the origin.
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            metrics = (await http.get(f"http://{edge_seeder.address}:3142/metrics")).text
        by_source = {
            line.split('"')[1]: int(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("frumitcache_apt_bytes_served_total{")
        }
        assert by_source["federation"] >= sum(map(len, want.values())), by_source
        assert by_source["uplink"] == 0, by_source
    finally:
        core.kill()
        edge.kill()
