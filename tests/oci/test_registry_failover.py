"""The registry mirror through a seeder failover (issue 13): a 3-agent site in front of a real
``docker-registry``, the uplink throttled by the agents' own ``origin.max_rate``, two members
pulling an image with a 64 MiB layer through their mirrors with real ``skopeo``. The seeder is
SIGKILLed when it holds half the layer: every member completes byte-identical, and the
registry's access log shows the layer sent no more than once, plus one chunk and what was in
flight."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.registry import Layout, RegistryProcess, build_layout, skopeo_push
from frumitcache.testing.site import LoopbackSite

from .conftest import REGISTRY_NAME, need, wait_for_seeder
from .test_registry_site import blobs_of, skopeo_pull

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB
RATE = 8 * MiB  # each agent's uplink budget: the 64 MiB layer takes about 8 s
# Bytes the registry wrote that never reached the seeder's store: the kernel's socket buffers
# on loopback (the agent paces its reads; the registry writes as fast as the buffers take).
IN_FLIGHT = 8 * MiB


@pytest.fixture(scope="module")
def big_image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RegistryProcess, Layout]]:
    need("docker-registry", "skopeo")
    root = tmp_path_factory.mktemp("registry-big")
    registry = RegistryProcess(root / "reg", loopback_address(), 5000)
    registry.start()
    try:
        layout = build_layout(
            root / "layout",
            "v1",
            shared=b"base",
            per_platform=1,
            layer_size=64 * MiB,
            platforms=(("amd64", ""),),
            fast_random=True,
        )
        skopeo_push(layout.path, layout.tag, f"{registry.host}/team/big:v1")
        yield registry, layout
    finally:
        registry.stop()


def _stored(agent: AgentProcess) -> int:
    """Bytes of chunk files in the agent's store (the seeder's progress on the layer)."""
    return sum(p.stat().st_size for p in (agent.directory / "store").rglob("*") if p.is_file())


async def test_seeder_killed_half_way_through_a_64_mib_layer(
    big_image: tuple[RegistryProcess, Layout], tmp_path: Path
) -> None:
    registry, layout = big_image
    big = max(layout.blobs, key=lambda d: len(layout.blobs[d]))
    size = len(layout.blobs[big])
    assert size > 64 * MiB
    settings: dict[str, dict[str, Any]] = {
        "oci": {
            "enabled": True,
            "port": 3146,
            "registries": [f"{REGISTRY_NAME}=http://{registry.host}"],
            "allowed_hosts": [f"{registry.address}:*"],
        },
        "origin": {"max_rate": RATE},
    }
    site = LoopbackSite(tmp_path / "site", 3, settings=settings)
    try:
        await site.start()
        first = await wait_for_seeder(site)
        victim = next(a for a in site.agents if a.settings["node"]["name"] == first)
        members = [a for a in site.agents if a is not victim]
        base = _stored(victim)

        async def kill_half_way() -> None:
            while _stored(victim) - base < size // 2:  # noqa: ASYNC110
                await trio.sleep(0.05)
            victim.kill()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, member in enumerate(members):
                    nursery.start_soon(
                        skopeo_pull, f"{member.address}:3146", "team/big:v1", tmp_path / f"out{i}"
                    )
        for i in range(len(members)):
            pulled = blobs_of(tmp_path / f"out{i}")
            assert pulled[big] == layout.blobs[big]
            assert set(pulled) <= set(layout.blobs)
        sent = registry.bytes_sent(f"/v2/team/big/blobs/{big}")
        logs = [m.log()[-4000:] for m in members]
        assert sent <= size + CHUNK + IN_FLIGHT, (sent, size, registry.requests()[-20:], logs)
    finally:
        site.kill()
