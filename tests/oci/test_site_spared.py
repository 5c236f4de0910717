"""The site's figure of upstream manifest GETs spared, on a real 3-agent site in front of a
real ``docker-registry``: the seeder counts members' manifest requests it answered without an
upstream GET for them and shows it (``frumitcache status``, ``/metrics``); a member shows only its
own count. The registry's access log is the ground truth for the GETs that were made."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.registry import OCI_INDEX, OCI_MANIFEST
from frumitcache.testing.site import LoopbackSite

from .conftest import REGISTRY_NAME, Pushed, wait_for_seeder

pytestmark = pytest.mark.slow


async def test_the_seeder_counts_the_sites_spared_manifest_gets(
    pushed: Pushed, tmp_path: Path
) -> None:
    await trio.to_thread.run_sync(pushed.push, "team/spare", "v1")
    site = LoopbackSite(
        tmp_path / "site", 3, settings={"oci": pushed.oci_settings(tag_window_s=600.0)}
    )
    await site.start()
    try:
        seeder = await wait_for_seeder(site)
        agents = {a.settings["node"]["name"]: a for a in site.agents}
        members = [agents[n] for n in agents if n != seeder]
        platform = pushed.layout.manifests["arm64"]
        paths = [
            ("/v2/team/spare/manifests/v1", OCI_INDEX),
            (f"/v2/team/spare/manifests/{platform}", OCI_MANIFEST),
        ]
        start = len(pushed.registry.requests())
        async with httpx.AsyncClient(timeout=30) as client:
            for path, accept in paths:
                for member in members:  # one after the other: the first asks, the second is spared
                    r = await client.get(
                        f"http://{member.address}:3146{path}?ns={REGISTRY_NAME}",
                        headers={"Accept": accept},
                    )
                    assert r.status_code == 200, r.text
            gets = [
                p
                for method, p, _ in pushed.registry.requests()[start:]
                if method == "GET" and "/manifests/" in p
            ]
            assert len(gets) == 2, gets  # one per manifest for the site
            counters = (await AgentClient(agents[seeder].socket).status()).oci_counters
            assert counters is not None
            assert counters["site_manifest_gets_spared"] == 2, counters
            metrics = (await client.get(f"http://{agents[seeder].address}:3146/metrics")).text
            assert "frumitcache_oci_site_manifest_gets_spared_total 2" in metrics
            for member in members:
                mine = (await AgentClient(member.socket).status()).oci_counters
                assert mine is not None
                assert "site_manifest_gets_spared" not in mine, mine
                text = (await client.get(f"http://{member.address}:3146/metrics")).text
                assert "site_manifest_gets_spared" not in text
        for agent in site.agents:
            assert "Traceback" not in agent.log()
    finally:
        site.kill()
