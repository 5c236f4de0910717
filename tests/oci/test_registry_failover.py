"""The seeder SIGKILLed while a 64 MiB layer is half fetched from the registry: every surviving
Pi still gets the whole verified layer, and the registry sent at most the layer plus one chunk
plus the bytes in flight (the new seeder resumes with Range after what the site holds)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.registry import build_layout
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import wait_for_seeder

from .conftest import REGISTRY_NAME, Pushed

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB


async def pull_blob(agent: AgentProcess, digest: str) -> str:
    """GET the blob through ``agent``'s mirror; the SHA-256 of what came back."""
    url = f"http://{agent.address}:3146/v2/{REGISTRY_NAME}/team/big/blobs/{digest}"
    sha = hashlib.sha256()
    async with httpx.AsyncClient(timeout=120) as client, client.stream("GET", url) as r:
        assert r.status_code == 200, await r.aread()
        async for piece in r.aiter_bytes():
            sha.update(piece)
    return "sha256:" + sha.hexdigest()


async def test_seeder_killed_half_way_through_a_layer(pushed: Pushed, tmp_path: Path) -> None:
    big = await trio.to_thread.run_sync(
        lambda: build_layout(
            tmp_path / "big", "v1", shared=b"", per_platform=1, layer_size=64 * MiB,
            platforms=(("amd64", ""),), fast_random=True,
        )
    )  # fmt: skip
    await trio.to_thread.run_sync(pushed.push, "team/big", "v1", big)
    layer = big.layers["amd64"][-1]
    size = len(big.blobs[layer])
    site = LoopbackSite(
        tmp_path / "site",
        4,
        settings={"oci": pushed.oci_settings(), "origin": {"max_rate": 16 * MiB}},
    )
    await site.start()
    try:
        first = await wait_for_seeder(site)
        victim = next(a for a in site.agents if a.settings["node"]["name"] == first)
        survivors = [a for a in site.agents if a is not victim]
        got: dict[int, str] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            got[i] = await pull_blob(agent, layer)

        async def kill_half_way() -> None:
            client = AgentClient(victim.socket)
            while (await client.status()).origin.get("bytes_received", 0) < size // 2:  # noqa: ASYNC110 - another process
                await trio.sleep(0.05)
            victim.kill()

        with trio.fail_after(180):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, agent in enumerate(survivors):
                    nursery.start_soon(one, i, agent)
        assert got == dict.fromkeys(range(len(survivors)), layer)
        sent = pushed.registry.bytes_sent(f"/v2/team/big/blobs/{layer}")
        assert size // 2 <= sent <= size + CHUNK + 512 * 1024, (sent, size)
    finally:
        site.kill()
