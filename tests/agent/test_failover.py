"""Seeder failover through real agent processes: the seeder is SIGKILLed while a large object
is half fetched from a throttled origin. The origin's byte counters are the ground truth for
"each byte crosses the uplink once"."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
from pathlib import Path

import pytest
import trio

from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite
from tests.agent.test_site_herd import pull, site_status, wait_for_seeder

pytestmark = pytest.mark.slow

MiB = 1024 * 1024
CHUNK = 4 * MiB


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    # 6 MiB/s: a 64 MiB object takes about 11 s, the kill lands in the middle of it.
    server = OriginServer(rate=6 * MiB)
    await nursery.start(server.serve, loopback_address())
    return server


async def test_seeder_killed_half_way_through_a_large_object(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(64 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/big.bin", data)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        first = await wait_for_seeder(site)
        victim = next(a for a in site.agents if a.settings["node"]["name"] == first)
        survivors = [a for a in site.agents if a is not victim]
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/big.bin"), digest, tmp_path / f"out{i}")

        async def kill_half_way() -> None:
            while origin.stats.bytes_sent["/big.bin"] < len(data) // 2:  # noqa: ASYNC110
                await trio.sleep(0.02)
            victim.kill()

        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(kill_half_way)
                for i, agent in enumerate(survivors):
                    nursery.start_soon(one, i, agent)
        logs = [a.log() for a in survivors]
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs)
            assert (tmp_path / f"out{i}").read_bytes() == data
        sent = origin.stats.bytes_sent["/big.bin"]
        assert sent <= len(data) + CHUNK + 512 * 1024, (sent, origin.stats.requests, logs)
        view = await site_status(survivors[0])
        assert view["seeder"] not in (None, first)
    finally:
        site.kill()


async def test_seeder_paused_past_its_lease(origin: OriginServer, tmp_path: Path) -> None:
    """SIGSTOP the seeder for about its lease, three times during the fetch: its lease lapses
    (fence) and either comes back in the same term or another member takes over. Every pull,
    the paused seeder's own included, completes with the right bytes."""
    data = os.urandom(64 * MiB)
    digest = hashlib.sha256(data).hexdigest()
    origin.add("/big.bin", data)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        await site.start()
        first = await wait_for_seeder(site)
        victim = next(a for a in site.agents if a.settings["node"]["name"] == first)
        results: dict[int, subprocess.CompletedProcess[bytes]] = {}

        async def one(i: int, agent: AgentProcess) -> None:
            results[i] = await pull(agent, origin.url("/big.bin"), digest, tmp_path / f"out{i}")

        async def pause() -> None:
            for k in range(1, 4):
                while origin.stats.bytes_sent["/big.bin"] < k * len(data) // 5:  # noqa: ASYNC110
                    await trio.sleep(0.02)
                os.kill(victim.pid, signal.SIGSTOP)
                try:
                    # About a lease (3 s; the seeder's own ends 0.25 s early): sometimes the
                    # lease comes back in the same term, sometimes another member stands.
                    await trio.sleep(random.uniform(2.6, 3.0))
                finally:
                    os.kill(victim.pid, signal.SIGCONT)

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(pause)
                for i, agent in enumerate(site.agents):
                    nursery.start_soon(one, i, agent)
        logs = [a.log() for a in site.agents]
        assert "seeder.fenced" in "".join(logs)  # the pauses did reach the fence
        for i, result in sorted(results.items()):
            assert result.returncode == 0, (result.stderr, logs)
            assert (tmp_path / f"out{i}").read_bytes() == data
    finally:
        site.kill()
