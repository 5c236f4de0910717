"""A 50 GiB object on a site of SiteNodes over real UDP, with their descriptions too large for a
frame carried over real signed peer HTTP ports: announced by the seeder, located by a member,
a member's holding reported to the seeder, and to a new seeder after a failover (``Have``)."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import trio
from trio.testing import MockClock

from frumitcache.agent._peerapi import PrefetchPeerHttpServer, request_bulk
from frumitcache.site import Bulk, Have, Lookup, MemberInfo, ObjectAnnounce, ObjectInfo, SiteNode
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from tests.site.test_bulk import BIG
from tests.site.test_driver import FAST, KEY, PORT, RecordingHooks, eventually, wait_one_seeder


class BulkHooks(RecordingHooks):
    """The agent's wiring of bulk bodies: fetched from the sender's peer port."""

    async def fetch_bulk(self, member: MemberInfo, bulk: Bulk) -> bytes:
        return await request_bulk((member.address, member.peer_port), KEY, bulk.token, bulk.size)


def no_keys(digest: bytes) -> list[str]:
    return []


def no_prefetch(url: str, sha256: bytes | None) -> str:
    return "present"


async def test_a_50_gib_object_is_announced_and_located(
    tmp_path: Path, autojump_clock: MockClock
) -> None:
    addresses = [loopback_address() for _ in range(3)]
    nodes: list[SiteNode] = []
    with trio.fail_after(60), contextlib.ExitStack() as stores:
        async with trio.open_nursery() as nursery:
            scopes: list[trio.CancelScope] = []
            for i, address in enumerate(addresses):
                store = stores.enter_context(
                    Store.open(tmp_path / f"store{i}", max_bytes=1 << 30, chunk_size=1 << 20)
                )
                node_box: list[SiteNode] = []

                def bulk(token: int, box: list[SiteNode] = node_box) -> bytes | None:
                    return box[0].bulk_body(token)

                http = PrefetchPeerHttpServer(
                    store, KEY, prefetch=no_prefetch, keys=no_keys, bulk=bulk
                )
                peer_port = await nursery.start(http.serve, address, 0)
                hooks = BulkHooks()
                me = MemberInfo(f"node{i}", address, PORT, peer_port, 3145, ram_bytes=1 << 30)
                peers = [a for a in addresses if a != address]
                node = SiteNode(dataclasses.replace(FAST, peers=peers), me, KEY, hooks=hooks)
                hooks.node = node
                node_box.append(node)
                nodes.append(node)
                scope = trio.CancelScope()
                scopes.append(scope)

                async def run(node: SiteNode = node, scope: trio.CancelScope = scope) -> None:
                    with scope:
                        await node.run()

                nursery.start_soon(run)
            seeder = await wait_one_seeder(nodes)
            one, two = [n for n in nodes if n is not seeder]
            inbox = one.open_subscription()
            # Announced: the seeder completed it and tells every member (12,800 chunks).
            await seeder.announce_object(BIG)
            announced = await inbox.receive()
            assert announced == ObjectAnnounce(BIG, seeder.me.node_id)
            # Located: a member asks the seeder; every chunk's holder comes back.
            info = await one.request(Lookup(0, BIG.url))
            assert isinstance(info, ObjectInfo)
            assert info.manifest == BIG
            assert len(info.holders) == 12_800
            assert all(h.full == (seeder.me.node_id,) for h in info.holders)
            # A member that pulled it tells the seeder, who then lists it as a holder too.
            await two.announce_object(BIG)
            await eventually(
                lambda: two.me.node_id in seeder.catalogue.holders(BIG.chunks[-1]).full
            )
            # The seeder goes: a new one rebuilds its catalogue from the members' Have reports.
            for node in (one, two):
                have = Have(node.me.node_id, objects=(BIG,), full=BIG.chunks)
                node.hooks.holdings = [have]  # type: ignore[attr-defined]
            seeder.say_goodbye = False
            scopes[nodes.index(seeder)].cancel()
            new = await wait_one_seeder([one, two])
            other = two if new is one else one
            await eventually(lambda: other.me.node_id in new.catalogue.holders(BIG.chunks[0]).full)
            info = await other.request(Lookup(0, BIG.url))
            assert isinstance(info, ObjectInfo)
            assert info.manifest is not None
            assert info.manifest.chunks == BIG.chunks
            assert other.me.node_id in info.holders[6400].full
            # Every one of those went as a Bulk frame and its body over the peer port.
            stats = [n.statistics() for n in nodes]
            assert sum(s.bulk_out for s in stats) >= 4
            assert sum(s.bulk_in for s in stats) >= 4
            assert not any(s.dropped.get("too-large-out") for s in stats)
            assert not any(s.dropped.get("bulk-unavailable") for s in stats)
            nursery.cancel_scope.cancel()
