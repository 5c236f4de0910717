"""Hostile datagrams at the control UDP port of real agent processes (issue 16, finding 5).

A keyless host on the LAN can record the site's frames and send them again, and send anything
it likes. Neither may change what a member serves, nor stop an agent.

To stand for a recording, the test signs a frame exactly as the seeder signs the replies it
sends to one member (it holds the site key for that alone) and sends it to another member
from a plain UDP socket that has no key.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import os
import random
import socket
import time
from pathlib import Path

import msgpack
import pytest
import trio

from frumitcache.client import AgentClient
from frumitcache.config import SiteConfig, StoreConfig
from frumitcache.site import ChunkHolders, FrameCodec, ObjectInfo, ObjectManifest, derive_mac_key
from frumitcache.site._codec import MAGIC
from frumitcache.testing.agents import AgentProcess
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer
from frumitcache.testing.site import LoopbackSite

pytestmark = pytest.mark.slow

PORT = SiteConfig().control_port
CHUNK = StoreConfig().chunk_size


async def status(agent: AgentProcess) -> dict[str, object]:
    return (await AgentClient(agent.socket).status()).site


async def dropped_frames(agent: AgentProcess) -> int:
    value = (await status(agent)).get("dropped_frames", 0)
    assert isinstance(value, int)
    return value


async def wait_for_seeder(site: LoopbackSite) -> str:
    while True:
        views = [await status(a) for a in site.agents]
        seeders = {v.get("seeder") for v in views}
        settled = all(len(v["members"]) == len(views) for v in views)  # type: ignore[arg-type]
        if len(seeders) == 1 and None not in seeders and settled:
            return str(seeders.pop())
        await trio.sleep(0.1)


async def pull(agent: AgentProcess, url: str, out: Path) -> None:
    result = await agent.pull(url, "-o", str(out))
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
            before = await dropped_frames(member)
            keyless = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with keyless:
                await keyless.bind((loopback_address(), 0))

                async def replay() -> None:
                    # Until the pull is done, replies with every id the member's old counter
                    # would have used (1, 2, ...) reach it ahead of the seeder's own. Paced
                    # (a few hundred a second): this is a replay, not a flood; on a loaded
                    # 2-core CI box an unpaced loop starved the seeder's own replies.
                    for rid in itertools.cycle(range(1, 9)):
                        await keyless.sendto(recorded(rid), target)
                        await trio.sleep(0.003)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(replay)
                    await pull(member, origin.url("/small.bin"), tmp_path / "small-at-member")
                    nursery.cancel_scope.cancel()
            assert (tmp_path / "small-at-member").read_bytes() == small
            # Served again from the member's store: still small.bin's bytes.
            await pull(member, origin.url("/small.bin"), tmp_path / "again")
            assert (tmp_path / "again").read_bytes() == small
            after = await dropped_frames(member)
            assert after > before, (before, after)
    finally:
        site.kill()


def _signed(mac_key: bytes, body: bytes) -> bytes:
    return MAGIC + hmac.new(mac_key, MAGIC + body, hashlib.sha256).digest() + body


def _fuzz_corpus(mac_key: bytes, recipient: str, seed: int = 16) -> list[bytes]:
    """A bounded random corpus: garbage, truncated and oversized datagrams without the key,
    and frames signed with the key whose content is wrong (each named by what is wrong)."""
    rng = random.Random(seed)
    now = time.time()
    fields = {"request_id": 1, "url": "u", "manifest": None}

    def body(*head: object) -> bytes:
        packed: bytes = msgpack.packb(list(head), use_bin_type=True)
        return packed

    corpus: list[bytes] = [
        b"",
        MAGIC,
        b"\0" * 65_000,  # oversized
        MAGIC + b"\xff" * 60_001,  # oversized, with a header
    ]
    for _ in range(300):
        corpus.append(rng.randbytes(rng.randrange(0, 1500)))  # garbage
        corpus.append(MAGIC + rng.randbytes(rng.randrange(0, 300)))  # no key: bad MAC
    good = _signed(mac_key, body("x", recipient, 1, 0, now, "ObjectInfo", fields))
    corpus += [good[:n] for n in range(0, len(good), 3)]  # truncated
    signed_bad = [
        b"\xc1",  # never msgpack
        msgpack.packb({"a": 1}),
        body("x", recipient, 1, 0, now, "ObjectInfo"),  # 6 items
        body("x", recipient, 1, -1, now, "Bye", {"node_id": "x"}),  # negative seq
        body("x", 7, 1, 0, now, "Bye", {"node_id": "x"}),  # recipient not a string
        body("x", recipient, 1, 0, now, "Hack", {}),  # unknown type
        body("x", recipient, 1, 0, now, "ObjectInfo", {**fields, "request_id": "1"}),
        body("x", recipient, 1, 0, now, "ObjectInfo", {**fields, "extra": 1}),
        body("x", recipient, 1, 0, now, "ObjectInfo", {"url": "u"}),  # missing fields
        body("x", recipient, 1, 0, now, "Claim", {"term": True, "candidate": "x"}),
        body("x", "someone-else", 1, 0, now, "ObjectInfo", fields),  # misaddressed
        body("x", "*", 1, 0, now, "ObjectInfo", fields),  # a reply may not be broadcast
        body("x", recipient, 1, 0, now - 3600, "Bye", {"node_id": "x"}),  # stale
        body("x", recipient, 1, 0, now, "ObjectInfo", fields),  # answers nothing asked
    ]
    corpus += [_signed(mac_key, b) for b in signed_bad]
    for i in range(200):  # signed random structures
        head: list[object] = [
            rng.choice(["x", 1, None, b"x", [], {}]) for _ in range(rng.randrange(0, 9))
        ]
        corpus.append(_signed(mac_key, body(*head)) if i % 2 else _signed(mac_key, body(head)))
    return corpus


async def test_the_control_port_survives_a_fuzzed_corpus_and_counts_it(
    origin: OriginServer, tmp_path: Path
) -> None:
    data = os.urandom(50_000)
    origin.add("/after.bin", data)
    site = LoopbackSite(tmp_path / "site", 2)
    try:
        with trio.fail_after(90):
            await site.start()
            seeder_name = await wait_for_seeder(site)
            names = [f"pi-{i:02d}" for i in range(2)]
            target = site.agents[names.index(seeder_name)]
            mac_key = derive_mac_key(site.key_file.read_bytes().strip(), "default")
            corpus = _fuzz_corpus(mac_key, seeder_name)
            before = await dropped_frames(target)

            async def dropped() -> int:
                return await dropped_frames(target) - before

            async def wait_dropped(count: int) -> None:
                # Another process's counter: polled (bounded by the fail_after above).
                while True:
                    if await dropped() >= count:
                        return
                    await trio.sleep(0.01)

            fuzzer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            with fuzzer:
                await fuzzer.bind((loopback_address(), 0))
                for sent, datagram in enumerate(corpus, 1):
                    await fuzzer.sendto(datagram, (target.address, PORT))
                    if sent % 20 == 0 or len(datagram) > 8192:
                        # Paced by what the agent has read, so the socket buffer never
                        # overflows and every datagram is accounted for.
                        await wait_dropped(sent)
            # Every datagram was dropped and counted; none was taken.
            await wait_dropped(len(corpus))
            assert await dropped() == len(corpus)
            assert target.proc is not None
            assert target.proc.poll() is None, target.log()
            # Still a working site: same seeder, both members, and it serves.
            assert await wait_for_seeder(site) == seeder_name
            other = site.agents[1 - names.index(seeder_name)]
            await pull(other, origin.url("/after.bin"), tmp_path / "after")
            assert (tmp_path / "after").read_bytes() == data
    finally:
        site.kill()
