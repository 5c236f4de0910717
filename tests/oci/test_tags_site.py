"""Tags through a real 3-agent site in front of a real ``docker-registry``: a tag is resolved by
the seeder at most once per ``oci.tag_window_s`` for the whole site, with a HEAD upstream and a
GET only when its digest changed; members never ask the registry. The registry's access log and
each agent's own uplink counters are the ground truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import OCI_INDEX, RegistryProcess, build_layout, skopeo_push
from frumitcache.testing.site import LoopbackSite

from .conftest import REGISTRY_NAME, Pushed, need, wait_for_seeder

pytestmark = pytest.mark.slow

WINDOW_S = 10.0
TAG_PATH = "/v2/team/moving/manifests/live"


async def resolve(client: httpx.AsyncClient, mirror: str) -> str:
    """The digest the mirror answers for the tag (HEAD, as containerd resolves)."""
    r = await client.head(
        f"http://{mirror}{TAG_PATH}?ns={REGISTRY_NAME}", headers={"Accept": OCI_INDEX}
    )
    assert r.status_code == 200, r.text
    return r.headers["docker-content-digest"]


def tag_requests(pushed: Pushed, since: int) -> Counter[str]:
    """Requests for the tag the registry served since entry ``since`` of its log, by method."""
    return Counter(
        method for method, path, _ in pushed.registry.requests()[since:] if path == TAG_PATH
    )


async def test_tag_moves_only_after_the_window_and_only_the_seeder_asks(
    pushed: Pushed, tmp_path: Path
) -> None:
    second = build_layout(
        tmp_path / "layout2", "v2", shared=b"next" * 20_000, per_platform=1, seed=b"second"
    )
    await trio.to_thread.run_sync(pushed.push, "team/moving", "live")
    site = LoopbackSite(
        tmp_path / "site", 3, settings={"oci": pushed.oci_settings(tag_window_s=WINDOW_S)}
    )
    await site.start()
    try:
        seeder = await wait_for_seeder(site)
        mirrors = {a.settings["node"]["name"]: f"{a.address}:3146" for a in site.agents}
        members = [name for name in mirrors if name != seeder]
        old, new = pushed.layout.index_digest, second.index_digest
        async with httpx.AsyncClient(timeout=30) as client:
            # First resolution, asked at a member: the seeder fetches the tag (one GET).
            start = len(pushed.registry.requests())
            resolved_at = trio.current_time()
            assert await resolve(client, mirrors[members[0]]) == old
            assert tag_requests(pushed, start) == Counter(GET=1)

            # The tag moves upstream; inside the window every node still answers the old
            # digest, and nobody asked the registry about the tag again.
            await trio.to_thread.run_sync(pushed.push, "team/moving", "live", second)
            moved = len(pushed.registry.requests())
            for name in [*members, seeder, *members]:
                assert await resolve(client, mirrors[name]) == old, name
            inside = trio.current_time() - resolved_at
            assert inside < WINDOW_S, f"checks took {inside:.1f}s: the window was too short"
            assert tag_requests(pushed, moved) == Counter(), "asked inside the window"

            # After the window: the new digest, found with one HEAD and one GET (it changed).
            with trio.fail_after(WINDOW_S + 60):
                while (digest := await resolve(client, mirrors[members[1]])) == old:  # noqa: ASYNC110 - polls a real server
                    await trio.sleep(0.5)
            assert digest == new
            assert trio.current_time() - resolved_at >= WINDOW_S
            for name in mirrors:
                assert await resolve(client, mirrors[name]) == new, name
            assert tag_requests(pushed, moved) == Counter(HEAD=1, GET=1)

            # Another window, no change upstream: a HEAD decides, no GET.
            again = len(pushed.registry.requests())
            await trio.sleep(WINDOW_S)  # the window itself is what is tested here
            for name in mirrors:
                assert await resolve(client, mirrors[name]) == new, name
            assert tag_requests(pushed, again) == Counter(HEAD=1)

        # Members never spoke to the registry at all: the seeder's uplink client did it all.
        for agent in site.agents:
            status = await AgentClient(agent.socket).status()
            name = agent.settings["node"]["name"]
            if name == seeder:
                assert status.origin["requests"] >= 4, status.origin
            else:
                assert status.origin["requests"] == 0, (name, status.origin)
        for agent in site.agents:
            assert "Traceback" not in agent.log()
    finally:
        site.kill()


async def test_offline_the_site_serves_the_held_tag(tmp_path: Path) -> None:
    """The registry goes away after a tag was pulled: past the window every node, a member
    that never held the tag too, still gets the digest the site holds."""
    need("docker-registry", "skopeo")
    registry = RegistryProcess(tmp_path / "reg", loopback_address(), 5000)
    registry.start()
    try:
        layout = build_layout(tmp_path / "layout", "v1", shared=b"off" * 1000, per_platform=1)
        await trio.to_thread.run_sync(
            skopeo_push, layout.path, "v1", f"{registry.host}/team/moving:live"
        )
        settings = {
            "registries": [f"{REGISTRY_NAME}=http://{registry.host}"],
            "allowed_hosts": [f"{registry.address}:*"],
            "tag_window_s": 1.0,
        }
        site = LoopbackSite(tmp_path / "site", 3, settings={"oci": settings})
        await site.start()
        try:
            seeder = await wait_for_seeder(site)
            mirrors = {a.settings["node"]["name"]: f"{a.address}:3146" for a in site.agents}
            members = [name for name in mirrors if name != seeder]
            async with httpx.AsyncClient(timeout=30) as client:
                assert await resolve(client, mirrors[members[0]]) == layout.index_digest
                registry.stop()
                await trio.sleep(1.5)  # past the window: the tag is due again
                for name in (members[1], members[0], seeder):
                    assert await resolve(client, mirrors[name]) == layout.index_digest, name
            log = "".join(a.log() for a in site.agents)
            assert "fetch.offline" in log
            assert "Traceback" not in log
        finally:
            site.kill()
    finally:
        registry.stop()
