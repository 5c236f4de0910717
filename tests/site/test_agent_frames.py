"""Hostile datagrams at the control UDP port of real agent processes (issue 16, finding 5).

A keyless host on the LAN can record the site's frames and send them again, and send anything
it likes. Neither may change what a member serves, nor stop an agent.

To stand for a recording, the test signs a frame exactly as the seeder signs the replies it
sends to one member (it holds the site key for that alone) and sends it to another member
from a plain UDP socket that has no key.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import socket
import sys
import time
from pathlib import Path

import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.config import SiteConfig, StoreConfig
from frumitcache.site import ChunkHolders, FrameCodec, ObjectInfo, ObjectManifest, derive_mac_key
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

pytestmark = pytest.mark.slow

PORT = SiteConfig().control_port
CHUNK = StoreConfig().chunk_size


async def status(agent: AgentProcess) -> dict[str, object]:
    return (await AgentClient(agent.socket).status()).site


async def wait_for_seeder(site: LoopbackSite) -> str:
    while True:
        views = [await status(a) for a in site.agents]
        seeders = {v.get("seeder") for v in views}
        settled = all(len(v["members"]) == len(views) for v in views)  # type: ignore[arg-type]
        if len(seeders) == 1 and None not in seeders and settled:
            return str(seeders.pop())
        await trio.sleep(0.1)


async def pull(agent: AgentProcess, url: str, out: Path) -> None:
    result = await trio.run_process(
        [
            sys.executable,
            "-m",
            "frumitcache",
            "pull",
            url,
            "-o",
            str(out),
            "--socket",
            str(agent.socket),
        ],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
    )
    assert result.returncode == 0, (result.stderr, agent.log())


@pytest.fixture
async def origin(nursery: trio.Nursery) -> OriginServer:
    server = OriginServer()
    await nursery.start(server.serve, loopback_address())
    return server


async def test_a_replayed_reply_from_a_keyless_host_does_not_change_what_a_member_serves(
    origin: OriginServer, tmp_path: Path
) -> None:
    small, big = b"small object\n" * 100, os.urandom(100_000)
    origin.add("/small.bin", small)
    origin.add("/big.bin", big)
    site = LoopbackSite(tmp_path / "site", 3)
    try:
        with trio.fail_after(90):
            await site.start()
            seeder_name = await wait_for_seeder(site)
            names = [f"pi-{i:02d}" for i in range(3)]
            seeder = site.agents[names.index(seeder_name)]
            member, other = (a for n, a in zip(names, site.agents, strict=True) if n != seeder_name)
            other_name = names[site.agents.index(other)]
            # The seeder holds big.bin; its reply to `other` about it is what the host records.
            await pull(seeder, origin.url("/big.bin"), tmp_path / "big-at-seeder")
            key = site.key_file.read_bytes().strip()  # the agents use the file's bytes
            as_seeder = FrameCodec(derive_mac_key(key, "default"), seeder_name, boot=7)
            manifest = ObjectManifest(
                origin.url("/big.bin"),
                hashlib.sha256(big).digest(),
                len(big),
                CHUNK,
                (hashlib.sha256(big).digest(),),
                True,
            )
            holders = (ChunkHolders(full=(seeder_name,)),)

            def recorded(rid: int) -> bytes:
                """The seeder's reply to `other` about big.bin, as a sniffer records it."""
                info = ObjectInfo(rid, origin.url("/big.bin"), manifest, holders)
                return as_seeder.encode(info, to=other_name, wall=time.time())

            target = (member.address, PORT)
            before = int((await status(member)).get("dropped_frames", 0))  # type: ignore[arg-type]
            keyless = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with keyless:
                await keyless.bind((loopback_address(), 0))

                async def replay() -> None:
                    # Until the pull is done, replies with every id the member's old counter
                    # would have used (1, 2, ...) reach it ahead of the seeder's own.
                    for rid in itertools.cycle(range(1, 9)):
                        await keyless.sendto(recorded(rid), target)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(replay)
                    await pull(member, origin.url("/small.bin"), tmp_path / "small-at-member")
                    nursery.cancel_scope.cancel()
            assert (tmp_path / "small-at-member").read_bytes() == small
            # Served again from the member's store: still small.bin's bytes.
            await pull(member, origin.url("/small.bin"), tmp_path / "again")
            assert (tmp_path / "again").read_bytes() == small
            after = int((await status(member)).get("dropped_frames", 0))  # type: ignore[arg-type]
            assert after > before, (before, after)
    finally:
        site.kill()
