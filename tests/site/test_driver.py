"""SiteNode over real UDP sockets on loopback addresses: election, requests, announcements,
an outsider without the key, garbage and replayed frames, failover."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from frumitcache.config import Config, NodeConfig, SiteConfig, SwarmConfig
from frumitcache.errors import ConfigError, OriginStatusError, PeerError
from frumitcache.site import (
    ChunkAnnounce,
    ErrorReply,
    FetchRequest,
    Have,
    Lookup,
    MemberInfo,
    Message,
    ObjectInfo,
    ObjectManifest,
    SiteHooks,
    SiteNode,
    SiteStatistics,
    member_from_config,
    parse_peer,
)
from frumitcache.testing.net import loopback_address

KEY = b"site-key-" * 4
PORT = 3143
# Every test that runs an election uses trio's autojump clock: all nodes live in this one trio
# run and loopback UDP is delivered at once, so virtual time moves only when every node is idle.
# Leases and timeouts are then exact, whatever the load of the machine running the tests.
FAST = SiteConfig(
    name="testsite",
    discovery=False,
    control_port=PORT,
    beacon_interval_s=0.2,
    member_timeout_s=0.8,
    member_forget_s=3.0,
    lease_s=0.6,
    election_round_s=0.1,
)


class RecordingHooks(SiteHooks):
    def __init__(self) -> None:
        self.fetches: list[tuple[str, str]] = []
        self.node: SiteNode | None = None
        self.changes: list[tuple[str, int] | None] = []
        self.holdings: list[Have] = []

    async def on_fetch_request(self, sender: str, request: FetchRequest) -> ObjectInfo | ErrorReply:
        assert self.node is not None
        if request.url.endswith("/404"):
            raise OriginStatusError("404 Not Found", status=404)
        self.fetches.append((sender, request.url))
        return self.node.catalogue.info(request.url, fetching=True)

    def have_report(self) -> list[Have]:
        return list(self.holdings)

    def on_seeder_change(self, seeder: tuple[str, int] | None) -> None:
        self.changes.append(seeder)


def make_node(name: str, address: str, peers: list[str], *, key: bytes = KEY) -> SiteNode:
    me = MemberInfo(name, address, PORT, 3144, 3145, ram_bytes=1 << 30)
    hooks = RecordingHooks()
    node = SiteNode(dataclasses.replace(FAST, peers=peers), me, key, hooks=hooks)
    hooks.node = node
    return node


@asynccontextmanager
async def running(*nodes: SiteNode) -> AsyncIterator[list[trio.CancelScope]]:
    """Run every node in its own cancel scope (cancel one to stop that node)."""
    async with trio.open_nursery() as nursery:
        scopes: list[trio.CancelScope] = []
        for node in nodes:
            scope = trio.CancelScope()
            scopes.append(scope)

            async def run(node: SiteNode = node, scope: trio.CancelScope = scope) -> None:
                with scope:
                    await node.run()

            nursery.start_soon(run)
        for node in nodes:
            await node.wait_ready()
        try:
            yield scopes
        finally:
            nursery.cancel_scope.cancel()


def site(n: int) -> list[SiteNode]:
    addresses = [loopback_address() for _ in range(n)]
    return [
        make_node(f"node{i}", a, [p for p in addresses if p != a]) for i, a in enumerate(addresses)
    ]


async def eventually(predicate: Callable[[], bool]) -> None:
    """Poll state that other tasks change (there is no event to wait on from outside)."""
    while not predicate():  # noqa: ASYNC110
        await trio.sleep(0.02)


async def wait_one_seeder(nodes: list[SiteNode]) -> SiteNode:
    while True:
        views = {node.seeder() for node in nodes}
        seeders = [node for node in nodes if node.is_seeder()]
        if len(views) == 1 and None not in views and len(seeders) == 1:
            return seeders[0]
        await trio.sleep(0.02)


async def test_three_nodes_elect_one_seeder_and_answer_requests(autojump_clock: MockClock) -> None:
    nodes = site(3)
    with trio.fail_after(15):
        async with running(*nodes):
            seeder = await wait_one_seeder(nodes)
            member = next(n for n in nodes if n is not seeder)
            assert {m.node_id for m in member.members()} == {"node0", "node1", "node2"}
            assert member.members()[0].node_id == member.me.node_id
            # Lookups and fetch requests go to the seeder, from anywhere.
            info = await member.request(Lookup(0, "http://o/x"))
            assert isinstance(info, ObjectInfo)
            assert info.manifest is None
            inbox = member.open_subscription()
            info = await member.request(FetchRequest(0, "http://o/x", b"\1" * 32))
            assert isinstance(info, ObjectInfo)
            assert info.fetching
            assert seeder.hooks.fetches == [(member.me.node_id, "http://o/x")]  # type: ignore[attr-defined]
            missing = await member.request(FetchRequest(0, "http://o/404"))
            assert missing == ErrorReply(missing.request_id, "origin-status", "404 Not Found", 404)
            local = await seeder.request(FetchRequest(0, "http://o/x"))
            assert isinstance(local, ObjectInfo)
            # The seeder announces chunks as it fetches them (cut-through) ...
            await seeder.announce_chunk("http://o/x", 0, b"\2" * 32, 1 << 20)
            got = await inbox.receive()
            assert got == ChunkAnnounce("http://o/x", 0, b"\2" * 32, 1 << 20, seeder.me.node_id)
            # ... and members report what they pulled.
            await member.announce_chunk("http://o/x", 0, b"\2" * 32, 1 << 20)
            await eventually(lambda: member.me.node_id in seeder.catalogue.holders(b"\2" * 32).full)
            info = await member.request(Lookup(0, "http://o/x"))
            assert isinstance(info, ObjectInfo)
            assert info.manifest is not None
            assert info.manifest.chunks == (b"\2" * 32,)
            assert set(info.holders[0].full) == {seeder.me.node_id, member.me.node_id}
            stats = member.statistics()
            assert stats.frames_in > 0
            assert stats.frames_out > 0
            assert stats.seeder == seeder.seeder()
            assert stats.members == 3


async def test_an_outsider_with_a_wrong_key_learns_nothing(autojump_clock: MockClock) -> None:
    nodes = site(3)
    outsider_address = loopback_address()
    outsider = make_node(
        "eve", outsider_address, [f"{n.me.address}:{PORT}" for n in nodes], key=b"wrong" * 8
    )
    with trio.fail_after(15):
        async with running(*nodes, outsider) as scopes:
            seeder = await wait_one_seeder(nodes)
            # Every node hears the outsider's beacons, and drops each one.
            await eventually(
                lambda: all(n.statistics().dropped.get("bad-mac", 0) >= 3 for n in nodes)
            )
            for node in nodes:
                assert "eve" not in {m.node_id for m in node.members()}
            assert [m.node_id for m in outsider.members()] == ["eve"]
            assert outsider.seeder() in (None, ("eve", 1))  # at most a site of its own
            # Silence it, then forge frames to the seeder (a chunk report, requests) with its
            # wrong key: each one is dropped and counted, and none is served.
            outsider.say_goodbye = False
            scopes[-1].cancel()
            await trio.sleep(2 * FAST.beacon_interval_s)
            before = seeder.statistics()
            forged: list[Message] = [
                ChunkAnnounce("u", 0, b"\3" * 32, 1, "eve"),
                Lookup(7, "u"),
                FetchRequest(8, "http://o/x"),
            ]
            with trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
                await raw.bind((outsider_address, 0))
                for msg in forged:
                    frame = outsider.codec.encode(msg, to=seeder.me.node_id, wall=time.time())
                    await raw.sendto(frame, (seeder.me.address, PORT))

            def bad_macs(stats: SiteStatistics) -> int:
                return stats.dropped.get("bad-mac", 0)

            await eventually(lambda: bad_macs(seeder.statistics()) >= bad_macs(before) + 3)
            await trio.sleep(FAST.beacon_interval_s)
            after = seeder.statistics()
            assert bad_macs(after) == bad_macs(before) + 3
            assert after.requests_served == before.requests_served
            assert seeder.catalogue.get("u") is None
            assert seeder.hooks.fetches == []  # type: ignore[attr-defined]


async def test_garbage_and_replayed_frames_are_dropped_and_counted(
    autojump_clock: MockClock,
) -> None:
    nodes = site(3)
    sniffer = trio.socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sniffer_address = loopback_address()
    await sniffer.bind((sniffer_address, PORT))
    # node0 also beacons to the sniffer: the same frame bytes it sends to node1.
    nodes[0] = make_node(
        "node0", nodes[0].me.address, [*nodes[0].site.peers, f"{sniffer_address}:{PORT}"]
    )
    target = (nodes[1].me.address, PORT)
    with sniffer, trio.fail_after(15):
        async with running(*nodes):
            await wait_one_seeder(nodes)
            frame = b""
            with trio.move_on_after(0.5):
                while True:  # the latest frame: node1 certainly got its copy
                    frame, _ = await sniffer.recvfrom(65536)
            assert frame
            await trio.sleep(0.05)
            for _ in range(3):
                await sniffer.sendto(frame, target)
            await sniffer.sendto(b"\x00garbage" * 10, target)
            await sniffer.sendto(frame[:20], target)
            await sniffer.sendto(frame[:-1] + bytes([frame[-1] ^ 1]), target)
            dropped: dict[str, int] = {}
            while (
                dropped.get("replay", 0) < 3
                or dropped.get("garbage", 0) < 2
                or dropped.get("bad-mac", 0) < 1
            ):
                await trio.sleep(0.02)
                dropped = nodes[1].statistics().dropped
            # And node1 is as healthy as before.
            await wait_one_seeder(nodes)


async def test_seeder_crash_fails_over_and_the_catalogue_is_rebuilt(
    autojump_clock: MockClock,
) -> None:
    nodes = site(3)
    with trio.fail_after(20):
        async with running(*nodes) as scopes:
            seeder = await wait_one_seeder(nodes)
            term = seeder.seeder()
            assert term is not None
            survivors = [n for n in nodes if n is not seeder]
            object_ = ObjectManifest("http://o/y", None, None, 1 << 20, (b"\4" * 32,), False)
            for node in survivors:
                node.hooks.holdings = [  # type: ignore[attr-defined]
                    Have(node.me.node_id, objects=(object_,), full=(b"\4" * 32,))
                ]
            seeder.say_goodbye = False  # a crash: no Bye
            scopes[nodes.index(seeder)].cancel()
            start = trio.current_time()
            new = await wait_one_seeder(survivors)
            failover_s = trio.current_time() - start
            print(f"failover {failover_s:.2f}s with lease_s={FAST.lease_s}")
            now_seeder = new.seeder()
            assert now_seeder is not None
            assert now_seeder[1] > term[1]
            # The new seeder rebuilt the catalogue from the members' reports.
            await eventually(lambda: len(new.catalogue.holders(b"\4" * 32).full) == 2)
            assert new.catalogue.get("http://o/y") == object_
            assert new.resume_index("http://o/y") == 1


async def test_discovery_by_ipv4_multicast(autojump_clock: MockClock) -> None:
    # A group and port of this test's own, so that no other site on the host is heard.
    nonce = int.from_bytes(loopback_address().encode()[-2:], "big") % 200
    cfg = dataclasses.replace(
        FAST,
        discovery=True,
        peers=[],
        multicast_v4=f"239.255.77.{nonce + 1}",
        control_port=PORT + 10,
    )
    nodes = [
        SiteNode(cfg, MemberInfo(f"m{i}", loopback_address(), PORT + 10, 1, 2), KEY)
        for i in range(3)
    ]
    with trio.fail_after(15):
        async with running(*nodes):
            if nodes[0].statistics().dropped.get("multicast-v4-unavailable"):
                pytest.skip("IPv4 multicast is not available on loopback here")
            await wait_one_seeder(nodes)
            await eventually(lambda: all(len(n.members()) == 3 for n in nodes))
            assert nodes[0].statistics().dropped.get("own", 0) > 0  # our own beacons loop back


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")
async def test_ipv6_static_peers(autojump_clock: MockClock) -> None:
    ports = []
    for _ in range(2):
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
            ports.append(s.getsockname()[1])
    nodes = [
        SiteNode(
            dataclasses.replace(FAST, control_port=ports[i], peers=[f"[::1]:{ports[1 - i]}"]),
            MemberInfo(f"v{i}", "::1", ports[i], 1, 2),
            KEY,
        )
        for i in range(2)
    ]
    with trio.fail_after(15):
        async with running(*nodes):
            await wait_one_seeder(nodes)
            assert {m.node_id for m in nodes[0].members()} == {"v0", "v1"}


async def test_requests_without_a_seeder_fail_fast_and_bad_timings_are_config_errors(
    autojump_clock: MockClock,
) -> None:
    node = make_node("alone", loopback_address(), [f"{loopback_address()}:{PORT}"])
    with trio.fail_after(5):
        async with running(node):
            assert node.seeder() is None  # it has peers, so it waits to hear them first
            with pytest.raises(PeerError):
                await node.request(Lookup(0, "u"))
            stats = node.statistics()
            assert stats.role == "follower"
            assert stats.members == 1
    with pytest.raises(ConfigError, match="member_timeout_s"):
        SiteNode(dataclasses.replace(FAST, member_timeout_s=0.1), node.me, KEY)
    with pytest.raises(ConfigError, match="election_round_s"):
        SiteNode(dataclasses.replace(FAST, election_round_s=1.0), node.me, KEY)


async def test_member_from_config_and_a_port_in_use() -> None:
    cfg = Config(
        node=NodeConfig(address=loopback_address(), priority=3, wired=False, link_mbit=100),
        site=dataclasses.replace(FAST, peer_port=4001),
        swarm=SwarmConfig(port=4002),
    )
    me = member_from_config(cfg, node_id="pi7", ram_bytes=512 << 20, free_disk_bytes=5)
    assert me == MemberInfo(
        "pi7", cfg.node.address, PORT, 4001, 4002, 3, "", 512 << 20, 5, 100, False, 0.0
    )
    assert parse_peer("10.0.0.1", 7) == ("10.0.0.1", 7)
    assert parse_peer("10.0.0.1:8", 7) == ("10.0.0.1", 8)
    assert parse_peer("fd00::1", 7) == ("fd00::1", 7)
    assert parse_peer("[fd00::1]:9", 7) == ("fd00::1", 9)
    first = SiteNode(FAST, me, KEY)
    second = SiteNode(FAST, dataclasses.replace(me, node_id="pi8"), KEY)
    with trio.fail_after(5):
        async with running(first):
            with pytest.raises(ConfigError, match="control_port"):
                await second.run()


async def test_a_one_node_site_elects_at_once_and_keeps_its_vote_on_disk(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    state = tmp_path / "site-election.json"
    cfg = dataclasses.replace(FAST, peers=[])
    me = MemberInfo("solo", loopback_address(), PORT, 1, 2)
    with trio.fail_after(5):
        for expected_term in (1, 2):
            node = SiteNode(cfg, me, KEY, durable_path=state)
            async with running(node):
                assert await node.wait_seeder() == ("solo", expected_term)
                assert node.is_seeder()
                await eventually(lambda: state.exists())
            saved = json.loads(state.read_text())
            assert saved["voted_term"] == expected_term
            assert saved["voted_for"] == "solo"


def test_a_reply_must_answer_the_request_it_claims() -> None:
    """Finding 5: replies are taken only from the node asked, about the URL (and digest) asked."""
    from frumitcache.site._setup import Pending as _Pending

    send, _receive = trio.open_memory_channel[ObjectInfo | ErrorReply](1)
    url, digest = "http://o/small.bin", b"\1" * 32
    pending = _Pending(send, FetchRequest(5, url, digest), {"seeder"})

    def info(u: str, d: bytes | None, manifest_url: str | None = None) -> ObjectInfo:
        return ObjectInfo(5, u, ObjectManifest(manifest_url or u, d, 1, 1, (b"\2" * 32,), True))

    assert pending.matches("seeder", info(url, digest)) is None
    assert pending.matches("seeder", info(url, None)) is None  # digest not known yet
    assert pending.matches("seeder", ErrorReply(5, "origin", "gone")) is None
    assert pending.matches("node1", info(url, digest)) == "reply-not-from-seeder"
    assert pending.matches("node1", ErrorReply(5, "origin", "gone")) == "reply-not-from-seeder"
    assert pending.matches("seeder", info("http://o/big.bin", digest)) == "reply-wrong-url"
    assert pending.matches("seeder", info(url, digest, "http://o/big.bin")) == "reply-wrong-url"
    assert pending.matches("seeder", info(url, b"\3" * 32)) == "reply-wrong-digest"
    send.close()
