"""Rate limits hold as rates through real agents: ``origin.max_rate`` on the uplink and
``swarm.upload_rate`` on a member's peer HTTP port and its libtorrent session.

Each test asserts a *lower* bound on the time a transfer takes: bytes beyond the bucket's burst
cannot arrive faster than the configured rate, however fast the machine. That checks the
limiter, not the machine's speed, so there is no upper bound (a slow CI box only makes the
transfers slower). Times are taken in-process around a library stream (no process start-up
inside the measured span) and only the configured rate can make them long: unlimited, the
same transfers take a fraction of the bound on loopback.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

MiB = 1024 * 1024
RATE = 1 * MiB
SIZE = 2 * MiB
BURST = max(RATE / 10, 64 * 1024)  # TokenBucket's default burst
SWARM_RATE = RATE // 2
DATA = hashlib.sha256(b"rate").digest() * (SIZE // 32)


async def timed_stream(agent: AgentProcess, url: str) -> tuple[float, bytes]:
    """Seconds from asking the agent to the last verified byte, and the bytes."""
    got = bytearray()
    with trio.fail_after(60):
        start = trio.current_time()
        async with AgentClient(agent.socket).stream(url) as chunks:
            async for data in chunks:
                got += data
        return trio.current_time() - start, bytes(got)


async def test_origin_max_rate_holds_as_a_rate(origin: OriginServer, tmp_path: Path) -> None:
    agent = AgentProcess(
        tmp_path / "node", address=loopback_address(), settings={"origin": {"max_rate": RATE}}
    )
    await agent.start()
    try:
        origin.add("/two.bin", DATA)
        elapsed, got = await timed_stream(agent, origin.url("/two.bin"))
        status = await AgentClient(agent.socket).status()
    except BaseException:
        print(agent.log())
        raise
    finally:
        agent.kill()
    assert got == DATA
    assert origin.stats.bytes_sent["/two.bin"] == SIZE  # once, whole: no retries padding time
    assert status.origin["max_rate"] == RATE
    # 2 MiB at 1 MiB/s after a 0.1 s burst: at least 1.9 s (0.9 of it, for clock granularity).
    assert elapsed >= 0.9 * (SIZE - BURST) / RATE, elapsed


@pytest.mark.parametrize(
    "chunk_size",
    [
        pytest.param(256 * 1024, id="peer-http"),  # up to swarm.small_chunk_bytes: peer HTTP
        pytest.param(2 * MiB, id="libtorrent"),  # above it: libtorrent (LAN peers limited too)
    ],
)
async def test_swarm_upload_rate_holds(
    origin: OriginServer, tmp_path: Path, chunk_size: int
) -> None:
    # swarm.upload_rate paces the sender on either path. The seeder fetches the object first
    # (the origin is not limited), then the member pulls every chunk from the seeder: only the
    # seeder's upload limit is in the way.
    site = LoopbackSite(
        tmp_path / "site",
        2,
        settings={
            "store": {"chunk_size": chunk_size},
            "swarm": {"upload_rate": SWARM_RATE},
        },
    )
    await site.start()
    try:
        with trio.fail_after(30):
            while True:
                views = [(await AgentClient(a.socket).status()).site for a in site.agents]
                seeders = {v.get("seeder") for v in views}
                if len(seeders) == 1 and None not in seeders:
                    break
                await trio.sleep(0.2)
        name = seeders.pop()
        seeder, member = sorted(site.agents, key=lambda a: a.settings["node"]["name"] != name)
        origin.add("/two.bin", DATA)
        _, got = await timed_stream(seeder, origin.url("/two.bin"))
        assert got == DATA
        elapsed, got = await timed_stream(member, origin.url("/two.bin"))
    except BaseException:
        for agent in site.agents:
            print(agent.log())
        raise
    finally:
        site.kill()
    assert got == DATA
    assert origin.stats.bytes_sent["/two.bin"] == SIZE  # the member's bytes came from the site
    # libtorrent's connect tick alone costs about a second: a half rate keeps the bound (about
    # 3.6 s) well above what an unlimited transfer takes (0.1 s peer HTTP, 1.0 s libtorrent).
    burst = max(SWARM_RATE / 10, 64 * 1024)
    assert elapsed >= 0.9 * (SIZE - burst) / SWARM_RATE, elapsed
