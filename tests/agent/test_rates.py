"""Rate limits hold as rates through real agents: ``origin.max_rate`` on the uplink (fetches
and apt's CONNECT tunnels) and ``swarm.upload_rate`` on a member's peer HTTP port and its
libtorrent session; tunnel and ``estimate`` HEAD bytes show in the uplink counters.

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
APT_PORT = 3142  # each agent has its own loopback address
# Every 32 bytes differ, so no two chunks are the same: a site fetches a repeated chunk once
# (04cb8b9), and a body of one 32-byte pattern had 8 equal 256 KiB chunks, one transfer.
DATA = b"".join(hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(SIZE // 32))


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


async def test_connect_tunnel_is_uplink_traffic_paced_by_max_rate(
    nursery: trio.Nursery, tmp_path: Path
) -> None:
    # A plain TCP upstream (the tunnel is opaque: no TLS needed to see its bytes) that sends
    # SIZE bytes to whoever connects, then closes.
    target = loopback_address()

    async def send_data(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(DATA)

    listeners = await trio.open_tcp_listeners(0, host=target)
    authority = f"{target}:{listeners[0].socket.getsockname()[1]}"
    nursery.start_soon(trio.serve_listeners, send_data, listeners)
    agent = AgentProcess(
        tmp_path / "node",
        address=loopback_address(),
        settings={
            "origin": {"max_rate": RATE},
            "apt": {"enabled": True, "port": APT_PORT, "connect_allowed_hosts": [authority]},
        },
    )
    await agent.start()
    try:
        answer = bytearray()
        with trio.fail_after(60):
            stream = await trio.open_tcp_stream(agent.address, APT_PORT)
            async with stream:
                start = trio.current_time()
                await stream.send_all(
                    f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode()
                )
                while data := await stream.receive_some(65536):
                    answer += data
                elapsed = trio.current_time() - start
        status = await AgentClient(agent.socket).status()
    except BaseException:
        print(agent.log())
        raise
    finally:
        agent.kill()
    head, _, body = bytes(answer).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head
    assert body == DATA
    # The uplink counters carry the tunnel: what came in, what went out (nothing), one tunnel.
    assert status.origin["tunnels"] == 1
    assert status.origin["bytes_received"] == SIZE
    assert status.origin["bytes_sent"] == 0
    assert elapsed >= 0.9 * (SIZE - BURST) / RATE, elapsed


async def test_estimate_heads_are_counted_as_uplink_bytes(
    origin: OriginServer, tmp_path: Path
) -> None:
    agent = AgentProcess(
        tmp_path / "node", address=loopback_address(), settings={"origin": {"max_rate": RATE}}
    )
    await agent.start()
    try:
        origin.add("/unseen.bin", DATA)
        client = AgentClient(agent.socket)
        before = (await client.status()).origin
        with trio.fail_after(30):
            est = await client.estimate([origin.url("/unseen.bin")])
        after = (await client.status()).origin
    except BaseException:
        print(agent.log())
        raise
    finally:
        agent.kill()
    assert est.items[0].size == SIZE
    assert est.items[0].source == "origin-head"
    assert origin.stats.requests["/unseen.bin"] == 1  # one HEAD, no body sent
    assert origin.stats.bytes_sent["/unseen.bin"] == 0
    assert after["requests"] == before["requests"] + 1
    # The HEAD's answer is what crossed the uplink: its head, a few hundred bytes.
    assert 50 < after["bytes_received"] - before["bytes_received"] < 2000


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
