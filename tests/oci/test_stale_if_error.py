"""Stale-if-error through a real 2-agent loopback site, a real HTTP test origin standing in for
the registry (its request log is the uplink's ground truth): once a tag is held, a 503, a 500 or
a 429 with ``Retry-After`` while the seeder revalidates it keeps every node serving the held
digest (the seeder's answer crosses the site; members never ask upstream), counted in
``/metrics`` and ``frumitcache status``; a tag the site never held answers the spec's 404 at
once, so containerd goes on to its next host. A registry that hangs is the same as one that
cannot be reached once the read timeout has passed."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import Fault, OriginServer
from frumitcache.testing.registry import OCI_INDEX
from frumitcache.testing.site import LoopbackSite

from ._mirror import host_of, mirror, registry_settings
from .conftest import wait_for_seeder
from .test_backoff import Gate

pytestmark = pytest.mark.slow

WINDOW_S = 3.0  # long enough for both nodes' answers on a busy box
TAG = "/v2/team/app/manifests/v1"
NEVER = "/v2/team/never/manifests/v1"
READ_TIMEOUT_S = 1.0


async def test_upstream_errors_keep_the_held_tag_site_wide(
    origin: OriginServer, tmp_path: Path
) -> None:
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    origin.add(TAG, index, content_type=OCI_INDEX, docker_content_digest=digest)
    oci = registry_settings(
        host_of(origin),
        tag_window_s=WINDOW_S,
        unreachable_backoff_s=0.5,
        unreachable_backoff_max_s=2.0,
    )
    site = LoopbackSite(tmp_path / "site", 2, settings={"oci": oci})
    await site.start()
    try:
        seeder_name = await wait_for_seeder(site)
        seeder, member = sorted(
            site.agents, key=lambda a: a.settings["node"]["name"] != seeder_name
        )
        mirrors = [f"http://{a.address}:3146" for a in (member, seeder)]
        async with httpx.AsyncClient(timeout=30) as client:

            async def get(mirror: str, path: str) -> httpx.Response:
                return await client.get(
                    f"{mirror}{path}?ns=lab.example", headers={"Accept": OCI_INDEX}
                )

            # Held: asked at the member, fetched once by the seeder for the site.
            for mirror in mirrors:
                first = await get(mirror, TAG)
                assert first.status_code == 200, first.text
                assert first.headers["docker-content-digest"] == digest

            for fault in (
                Fault(status=503),
                Fault(status=500),
                Fault(status=429, retry_after="1"),
            ):
                origin.misbehave(TAG, fault)
                start = len(origin.stats.log)
                await trio.sleep(WINDOW_S + 2.2)  # past the window and any backoff
                for mirror in mirrors:  # the member first: its request makes the seeder ask
                    held = await get(mirror, TAG)
                    assert held.status_code == 200, (fault, mirror, held.text)
                    assert held.headers["docker-content-digest"] == digest
                    assert held.content == index
                asked = Counter((r.method, r.path, r.status) for r in origin.stats.log[start:])
                assert asked == Counter({("HEAD", TAG, fault.status): 1}), (fault, asked)

                # Never held: the spec's error at once; a 5xx as a 404, so containerd goes on
                # to its next host (the registry asked, or backed off after its 503), a 429
                # as itself.
                origin.misbehave(NEVER, fault)
                for mirror in mirrors:
                    began = trio.current_time()
                    miss = await get(mirror, NEVER)
                    assert trio.current_time() - began < 2.0
                    if fault.status == 429:
                        assert miss.status_code == 429, miss.text
                        assert 0 < int(miss.headers["retry-after"]) <= 1
                    else:
                        assert miss.status_code == 404, miss.text
                        assert miss.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"

            # The seeder counted the three held answers it gave the site; the member none.
            metrics = (await client.get(f"{mirrors[1]}/metrics")).text
            assert "frumitcache_oci_served_stale_total 3" in metrics, metrics
        counters = {}
        for agent in (seeder, member):
            status = await AgentClient(agent.socket).status()
            assert status.oci_counters is not None
            counters[agent] = status.oci_counters["served_stale"]
        assert counters == {seeder: 3, member: 0}
        # The member's answers came through the site: its own uplink client never asked.
        assert (await AgentClient(member.socket).status()).origin["requests"] == 0
        log = seeder.log()
        assert "fetch.kept-held" in log
        assert "status=503" in log
        assert "status=429" in log
        for agent in site.agents:
            assert "Traceback" not in agent.log()
    finally:
        site.kill()


async def test_a_registry_that_hangs_keeps_the_held_tag(
    origin: OriginServer, nursery: trio.Nursery, tmp_path: Path
) -> None:
    """A registry that accepts and never answers: once the uplink client's read timeout ends
    the revalidation, the held tag is served (and a miss answered 404) instead of the pull
    failing or hanging on."""
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}).encode()
    digest = "sha256:" + hashlib.sha256(index).hexdigest()
    origin.add(TAG, index, content_type=OCI_INDEX, docker_content_digest=digest)
    target = urlsplit(origin.url("/"))
    assert target.hostname is not None
    assert target.port is not None
    gate = Gate((target.hostname, target.port))
    gate_address = loopback_address()
    host = f"{gate_address}:{await nursery.start(gate.serve, gate_address)}"
    settings = {"retries": 0, "read_timeout_s": READ_TIMEOUT_S}
    async with mirror(
        tmp_path, host, oci={"tag_window_s": WINDOW_S}, origin_settings=settings, timeout_s=30
    ) as m:
        assert (await m.get(TAG)).status_code == 200
        gate.hang()
        await trio.sleep(WINDOW_S + 0.2)  # past the window: the tag is due again
        began = trio.current_time()
        held = await m.get(TAG)
        assert held.status_code == 200, held.text
        assert held.headers["docker-content-digest"] == digest
        assert trio.current_time() - began < READ_TIMEOUT_S + 5
        assert gate.dropped >= 1  # the registry was asked, and said nothing
        assert (await m.get(NEVER)).status_code == 404  # backed off now: at once
        status = await AgentClient(m.agent.socket).status()
        assert status.oci_counters is not None
        assert status.oci_counters["served_stale"] == 1
        assert "fetch.offline" in m.agent.log()
        assert "Traceback" not in m.agent.log()
