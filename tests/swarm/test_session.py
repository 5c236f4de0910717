"""The libtorrent session inside trio: admission, single-flight fetches, statistics."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.errors import NotInStoreError, PeerError
from frumitcache.store import Store
from frumitcache.swarm import (
    ChunkFetcher,
    ChunkRef,
    Holder,
    HttpChunkClient,
    PeerHttpServer,
    Swarm,
    chunk_torrent,
    merkle_tree,
)
from frumitcache.testing.net import loopback_address
from tests.swarm.fakepeer import LyingPeer

MiB = 1024 * 1024


def _store(path: Path) -> Store:
    return Store.open(path, max_bytes=1 << 30, chunk_size=4 * MiB)


async def test_ip_filter_admits_members_only_and_fetches_are_single_flight(
    tmp_path: Path,
) -> None:
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).digest()
    tree = merkle_tree(data)
    stores = [_store(tmp_path / name) for name in ("holder", "member", "stranger")]
    holder_s, member_s, stranger_s = stores
    await holder_s.put_chunk(data, digest)
    swarms = [Swarm(s, address=loopback_address()) for s in stores]
    holder, member, stranger = swarms
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for s in swarms:
                    await nursery.start(s.run)
                holder.set_members([member.address])
                await holder.seed(digest)
                peer = [(holder.address, holder.listen_port)]
                with pytest.raises(PeerError, match="no progress"):
                    await stranger.fetch_chunk(
                        digest, len(data), peer, root=tree.root, stall_timeout=3
                    )
                assert not stranger_s.has_chunk(digest)
                # Two fetches of one chunk at once: one download, both return when stored.
                async with trio.open_nursery() as both:
                    for _ in range(2):
                        both.start_soon(
                            lambda: member.fetch_chunk(digest, len(data), peer, root=tree.root)
                        )
                assert (await member_s.read_chunk(digest)) == data
                assert member_s.chunk_root(digest) == tree.root
                st = member.statistics()
                assert st.downloaded >= len(data)
                assert st.chunks[digest].seeding  # it serves what it fetched
                assert holder.statistics().uploaded >= len(data)
                assert stranger.statistics().downloaded == 0
                # Already stored: returns at once, no torrent needed.
                await member.fetch_chunk(digest, len(data), [], root=tree.root)
                with pytest.raises(NotInStoreError):
                    await stranger.seed(digest)
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.close()


async def test_tree_of_a_stored_chunk_is_computed_and_checked(tmp_path: Path) -> None:
    data = os.urandom(3 * MiB + 5)
    digest = hashlib.sha256(data).digest()
    with _store(tmp_path / "s") as store:
        await store.put_chunk(data, digest)
        swarm = Swarm(store, address=loopback_address())
        tree = await swarm.tree(digest)
        assert tree == merkle_tree(data)
        assert store.chunk_root(digest) == tree.root
        with pytest.raises(NotInStoreError):
            await swarm.tree(bytes(32))


async def test_peer_sending_bad_data_is_banned_and_chunk_comes_from_another(
    tmp_path: Path,
) -> None:
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).digest()
    tree = merkle_tree(data)
    torrent = chunk_torrent(digest, len(data), tree.root)
    liar = LyingPeer(torrent.info_hash, torrent.num_pieces)
    liar_address = loopback_address()
    stores = [_store(tmp_path / name) for name in ("holder", "me")]
    await stores[0].put_chunk(data, digest)
    holder, me = (Swarm(s, address=loopback_address()) for s in stores)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                liar_port = await nursery.start(liar.serve, liar_address)
                for s in (holder, me):
                    await nursery.start(s.run)
                holder.set_members([me.address])  # the site's membership (default: deny)
                await holder.seed(digest)

                async def honest_later() -> None:
                    await liar.lied.wait()
                    me.add_holders(digest, [(holder.address, holder.listen_port)])

                nursery.start_soon(honest_later)
                await me.fetch_chunk(
                    digest,
                    len(data),
                    [(liar_address, liar_port)],
                    root=tree.root,
                    piece_layer=tree.piece_layer,
                )
                assert (await stores[1].read_chunk(digest)) == data
                st = me.statistics()
                assert liar.blocks_sent > 0
                assert st.hash_failures > 0
                assert liar_address in st.banned_peers
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.close()


async def test_stalled_swarm_falls_back_to_peer_http(tmp_path: Path) -> None:
    key = os.urandom(32)
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).digest()
    stores = [_store(tmp_path / name) for name in ("holder", "me")]
    await stores[0].put_chunk(data, digest)
    holder, me = (Swarm(s, address=loopback_address()) for s in stores)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for s in (holder, me):
                    await nursery.start(s.run)
                server = PeerHttpServer(stores[0], key, trees=holder.tree)
                peer_port = await nursery.start(server.serve, holder.address, 0)
                holder.set_members([])  # its torrent port admits nobody: the swarm stalls
                await holder.seed(digest)
                fetcher = ChunkFetcher(
                    stores[1],
                    HttpChunkClient(stores[1], key),
                    me,
                    small_chunk_bytes=0,
                    stall_timeout=2,
                )
                await fetcher.fetch(
                    ChunkRef(digest, len(data)),
                    [Holder(holder.address, peer_port, holder.listen_port)],
                )
                assert (await stores[1].read_chunk(digest)) == data
                assert server.statistics().bytes_served == len(data)
                assert me.statistics().chunks[digest].seeding  # and it serves it by torrent
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.close()


async def test_the_seeders_only_fellow_takes_a_fresh_chunk_over_peer_http(
    tmp_path: Path,
) -> None:
    """In a 2-node site the member has nobody to trade with: it takes each fresh chunk from
    the seeder in one peer HTTP GET, not through libtorrent (whose connect tick made it trail
    a fast seeder by chunks a seeder's death cost again). The seeder's torrent port admits
    nobody here, so a swarm fetch would wait out its stall timeout."""
    key = os.urandom(32)
    data = os.urandom(2 * MiB)
    digest = hashlib.sha256(data).digest()
    stores = [_store(tmp_path / name) for name in ("seeder", "me")]
    await stores[0].put_chunk(data, digest)
    seeder, me = (Swarm(s, address=loopback_address()) for s in stores)
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for s in (seeder, me):
                    await nursery.start(s.run)
                server = PeerHttpServer(stores[0], key, trees=seeder.tree)
                peer_port = await nursery.start(server.serve, seeder.address, 0)
                seeder.set_members([])
                await seeder.seed(digest)
                fetcher = ChunkFetcher(
                    stores[1],
                    HttpChunkClient(stores[1], key),
                    me,
                    small_chunk_bytes=0,
                    me=Holder(me.address, 1, me.listen_port),
                    stall_timeout=3600,  # the swarm path would hold the test past its bound
                )
                holders = [Holder(seeder.address, peer_port, seeder.listen_port, seeder=True)]
                await fetcher.fetch(ChunkRef(digest, len(data)), holders)
                assert (await stores[1].read_chunk(digest)) == data
                assert server.statistics().bytes_served == len(data)
                assert me.statistics().chunks[digest].seeding  # and it serves it by torrent
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.close()


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
async def test_a_fetched_chunk_is_seeded_on_by_its_download_from_the_store_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, links: bool
) -> None:
    """The download's torrent serves on from the store's name of its file (its peers stay
    connected); on a file system without hard links (vfat) the file itself is handed over
    and the chunk seeded by a new torrent, as before."""
    if not links:

        def no_link(src: object, dst: object) -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(os, "link", no_link)
    data = os.urandom(2 * MiB + 7)
    digest = hashlib.sha256(data).digest()
    tree = merkle_tree(data)
    stores = [_store(tmp_path / name) for name in ("holder", "member", "third")]
    await stores[0].put_chunk(data, digest)
    holder, member, third = swarms = [Swarm(s, address=loopback_address()) for s in stores]
    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as nursery:
                for s in swarms:
                    await nursery.start(s.run)
                    s.set_members(None)
                await holder.seed(digest)
                fetched = trio.Event()

                async def download() -> None:
                    holders = [(holder.address, holder.listen_port)]
                    await member.fetch_chunk(digest, len(data), holders, root=tree.root)
                    fetched.set()

                nursery.start_soon(download)
                while digest not in member._torrents:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                torrent = member._torrents[digest]
                await fetched.wait()
                assert torrent.seeding is links
                assert (member._torrents[digest] is torrent) is links
                assert member.statistics().chunks[digest].seeding
                assert list((stores[1].tmp_dir / "swarm").iterdir()) == []
                await holder.unseed(digest)
                await third.fetch_chunk(
                    digest, len(data), [(member.address, member.listen_port)], root=tree.root
                )
                assert (await stores[2].read_chunk(digest)) == data
                assert member.statistics().uploaded >= len(data)
                nursery.cancel_scope.cancel()
    finally:
        for store in stores:
            store.close()
