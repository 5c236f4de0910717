"""The registry door through a federation of real agents: a core site (2 agents) in front of a
real ``docker-registry`` and an edge site (2 agents) whose seeder asks the core, every agent
with ``[federation]`` set and the door unchanged. Real ``skopeo`` pulls a multi-arch image at
the core, then at the edge: each blob and manifest by digest reaches the registry once for the
federation (the edge's seeder gets them by digest from the core). Tags are the edge's own to
resolve: its seeder asks the registry with HEAD once per window, as without a federation."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.registry import build_layout, skopeo_push
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder
from tests.federation.sites import fed_site, members, new_key, uplink
from tests.oci.conftest import REGISTRY_NAME, Pushed
from tests.oci.test_registry_site import blobs_of, skopeo_pull
from tests.oci.test_token_auth import SECRET, USER, Auth

pytestmark = pytest.mark.slow


async def test_skopeo_at_an_edge_gets_each_blob_from_the_core(
    pushed: Pushed, tmp_path: Path
) -> None:
    key = new_key()
    core = fed_site(tmp_path / "core", 2, key)
    edge = fed_site(tmp_path / "edge", 2, key, parents=members(core), name="edge")
    for site in (core, edge):
        for agent in site.agents:
            agent.settings["oci"].update(pushed.oci_settings())
    try:
        await core.start()
        await edge.start()
        await wait_for_seeder(core)
        named = await wait_for_seeder(edge)
        seeder = next(a for a in edge.agents if a.settings["node"]["name"] == named)
        member = next(a for a in edge.agents if a is not seeder)
        before = len(pushed.registry.requests())
        with trio.fail_after(120):
            await skopeo_pull(f"{core.addresses[0]}:3146", "team/app:v1", tmp_path / "c", "--all")
            at_core = len(pushed.registry.requests())
            # The edge's seeder first (it goes through the core), then its member (its site).
            for i, agent in enumerate((seeder, member)):
                out = tmp_path / f"e{i}"
                await skopeo_pull(f"{agent.address}:3146", "team/app:v1", out, "--all")
        # Byte-identical everywhere: every pull holds exactly the pushed blobs.
        for name in ("c", "e0", "e1"):
            assert blobs_of(tmp_path / name) == pushed.layout.blobs, name
        log = pushed.registry.requests()
        gets = Counter(p.split("?")[0] for m, p, _ in log[before:] if m == "GET")
        by_digest = {
            f"/v2/team/app/{'manifests' if d in pushed.layout.manifests.values() else 'blobs'}/{d}"
            for d in pushed.layout.blobs
            if d != pushed.layout.index_digest
        }
        for path in by_digest:
            assert gets[path] == 1, (path, log[before:])
        # What the edge asked the registry itself: the tag (HEAD, and a GET of it on first
        # sight), never a blob or a manifest by digest.
        edge_asked = [(m, p.split("?")[0]) for m, p, _ in log[at_core:]]
        assert all(p == "/v2/team/app/manifests/v1" or p == "/v2/" for _, p in edge_asked), (
            edge_asked
        )
        # The edge's seeder counts the blobs as the core's (one parent link), and its door
        # says it served them from the federation; the member served them from its site.
        blob_bytes = sum(
            len(b)
            for d, b in pushed.layout.blobs.items()
            if d != pushed.layout.index_digest and d not in pushed.layout.manifests.values()
        )
        counters = await uplink(seeder)
        assert counters["federation_bytes"] >= blob_bytes, counters
        info = (await AgentClient(seeder.socket).site()).uplink
        assert all(k.startswith("parent@") for k in info.federation_by_link), info
        async with httpx.AsyncClient(trust_env=False, timeout=10) as client:
            metrics = {
                a: (await client.get(f"http://{a.address}:3146/metrics")).text
                for a in (seeder, member)
            }
        served = {a: _blob_bytes_by_source(text) for a, text in metrics.items()}
        assert served[seeder]["federation"] >= blob_bytes, served[seeder]
        assert served[seeder]["uplink"] == 0, served[seeder]
        assert served[member]["site"] >= blob_bytes, served[member]
    finally:
        core.kill()
        edge.kill()


def _blob_bytes_by_source(metrics: str) -> dict[str, int]:
    prefix = "frumitcache_oci_bytes_served_total{"
    return {
        line.split('"')[1]: int(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(prefix)
    }


def token_sites(auth: Auth, tmp_path: Path) -> tuple[LoopbackSite, LoopbackSite]:
    """A one-agent core and a one-agent edge under it, both with the token registry as their
    registry door's upstream (tokens that live 300 s)."""
    auth.tokens.fail_with = None
    auth.tokens.token_lifetime_s = 300
    oci = {
        "registries": [f"{REGISTRY_NAME}=http://{auth.registry.host}"],
        "allowed_hosts": [f"{auth.registry.address}:*"],
    }
    key = new_key()
    core = fed_site(tmp_path / "core", 1, key)
    edge = fed_site(tmp_path / "edge", 1, key, parents=members(core), name="edge")
    for site in (core, edge):
        site.agents[0].settings["oci"].update(oci)
    return core, edge


async def test_blobs_of_a_token_registry_come_from_the_core(auth: Auth, tmp_path: Path) -> None:
    """A registry behind a token service (as Docker Hub and ghcr.io are, anonymous pulls of
    public images included): the edge's seeder sends the registry's token with every blob
    request, yet takes each blob the core holds from the core, asked only-if-cached and
    without the token (checked against its digest on arrival); the registry served each blob
    once for the federation and no token left the edge for the core."""
    core, edge = token_sites(auth, tmp_path)
    try:
        await core.start()
        await edge.start()
        before = len(auth.registry.requests())
        with trio.fail_after(120):
            for i, site in enumerate((core, edge)):
                out = tmp_path / f"p{i}"
                await skopeo_pull(f"{site.addresses[0]}:3146", "public/app:v1", out, "--all")
                assert blobs_of(out) == auth.layout.blobs
        served = [
            p.split("?")[0]
            for m, p, status in auth.registry.requests()[before:]
            if m == "GET" and status in (200, 206) and "/blobs/" in p
        ]
        blobs = Counter(served)
        assert blobs, auth.registry.requests()[before:]
        assert all(n == 1 for n in blobs.values()), blobs
        counters = await uplink(edge.agents[0])
        assert counters["federation_bytes"] >= sum(
            len(auth.layout.blobs[p.rsplit("/", 1)[1]]) for p in blobs
        ), counters
        assert "eyJ" not in core.agents[0].log() + edge.agents[0].log()
    finally:
        core.kill()
        edge.kill()


async def test_a_token_registry_blob_the_core_is_fetching_is_joined(
    auth: Auth, tmp_path: Path
) -> None:
    """The same blob of a token registry asked at the core and at the edge at the same moment:
    the edge's seeder cannot pass its token on, so it asks the core only-if-cached, and the
    core, still fetching the blob for its own client, serves it as it arrives. The registry
    sends the blob once (it sent it twice before: the core answered 504 until it held it)."""
    core, edge = token_sites(auth, tmp_path)
    # A 1 MiB layer behind a slow core uplink: the core's fetch of it runs for seconds.
    big = build_layout(
        tmp_path / "big",
        "v1",
        shared=b"big" * 1000,
        per_platform=1,
        layer_size=1 << 20,
        platforms=(("amd64", ""),),
        fast_random=True,
    )
    skopeo_push(big.path, "v1", f"{auth.registry.host}/public/big:v1", creds=f"{USER}:{SECRET}")
    core.agents[0].settings.setdefault("origin", {})["max_rate"] = 200_000
    digest, blob = max(big.blobs.items(), key=lambda kv: len(kv[1]))
    path = f"/v2/public/big/blobs/{digest}"
    try:
        await core.start()
        await edge.start()
        # As skopeo does, the image's manifest first: the edge then holds a token for the
        # repository and sends it with the blob request (a request without one is no test).
        for site in (core, edge):
            async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
                tag = f"http://{site.addresses[0]}:3146/v2/public/big/manifests/v1"
                assert (await client.get(f"{tag}?ns={REGISTRY_NAME}")).status_code == 200
        before = len(auth.registry.requests())
        was = await uplink(edge.agents[0])
        got: dict[str, bytes] = {}

        async def pull(name: str, address: str) -> None:
            url = f"http://{address}:3146{path}?ns={REGISTRY_NAME}"
            async with httpx.AsyncClient(trust_env=False, timeout=60) as client:
                response = await client.get(url)
            assert response.status_code == 200, (name, response.text)
            got[name] = response.content

        with trio.fail_after(120):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pull, "core", core.addresses[0])
                for _ in range(1200):  # until the core's fetch of the blob runs
                    if (await uplink(core.agents[0])).get("active_fetches", 0) >= 1:
                        break
                    await trio.sleep(0.05)
                nursery.start_soon(pull, "edge", edge.addresses[0])
        assert got == {"core": blob, "edge": blob}
        served = [
            p.split("?")[0]
            for m, p, status in auth.registry.requests()[before:]
            if m == "GET" and status in (200, 206) and "/blobs/" in p
        ]
        assert served == [path], served
        counters = await uplink(edge.agents[0])
        assert counters["federation_bytes"] - was["federation_bytes"] >= len(blob), counters
        assert counters["origin_bytes"] == was["origin_bytes"], (was, counters)
        assert "eyJ" not in core.agents[0].log() + edge.agents[0].log()
    finally:
        core.kill()
        edge.kill()
