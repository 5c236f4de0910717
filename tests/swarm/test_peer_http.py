"""Peer HTTP: signed chunk pulls between real loopback sockets."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import h11
import pytest
import trio

from frumitcache._signing import HEADER, sign
from frumitcache.errors import NotInStoreError, PeerError
from frumitcache.store import Store
from frumitcache.swarm._merkle import MerkleTree, merkle_tree
from frumitcache.swarm._peer_client import HttpChunkClient, get_chunk, signed_request
from frumitcache.swarm._peer_http import PeerHttpServer
from frumitcache.swarm._peer_wire import MAX_TREES, pack_trees, unpack_trees
from frumitcache.testing.net import loopback_address

KEY = os.urandom(32)


def _store(path: Path) -> Store:
    return Store.open(path, max_bytes=1 << 30, chunk_size=1 << 20)


async def _serve(
    nursery: trio.Nursery, store: Store, key: bytes = KEY
) -> tuple[str, int, PeerHttpServer]:
    address = loopback_address()
    server = PeerHttpServer(store, key)
    port = await nursery.start(server.serve, address, 0)
    return address, port, server


async def test_pull_verify_store(tmp_path: Path) -> None:
    data = os.urandom(300_000)
    digest = hashlib.sha256(data).digest()
    holder = _store(tmp_path / "holder")
    await holder.put_chunk(data, digest)
    mine = _store(tmp_path / "mine")
    with holder, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address, port, server = await _serve(nursery, holder)
            client = HttpChunkClient(mine, KEY)
            assert await client.fetch(digest, len(data), [(address, port)]) == (address, port)
            assert (await mine.read_chunk(digest)) == data
            assert server.statistics().served == 1
            assert server.statistics().bytes_served == len(data)
            nursery.cancel_scope.cancel()


async def test_unsigned_stale_and_wrong_key_get_403(tmp_path: Path) -> None:
    holder = _store(tmp_path / "holder")
    data = b"x" * 1000
    digest = hashlib.sha256(data).digest()
    await holder.put_chunk(data, digest)
    with holder, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address, port, server = await _serve(nursery, holder)
            with pytest.raises(PeerError, match="HTTP 403"):
                await get_chunk((address, port), digest, b"wrong key", max_bytes=10_000)
            # unsigned, by hand
            stream = await trio.open_tcp_stream(address, port)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                req = h11.Request(
                    method="GET", target=f"/chunk/{digest.hex()}", headers=[("host", "x")]
                )
                await stream.send_all(conn.send(req) + conn.send(h11.EndOfMessage()))
                raw = await stream.receive_some(4096)
                assert raw.startswith(b"HTTP/1.1 403")
            assert server.statistics().rejected == 2
            assert server.statistics().served == 0
            nursery.cancel_scope.cancel()


async def test_bad_holder_is_dropped_and_next_holder_used(tmp_path: Path) -> None:
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).digest()
    good = _store(tmp_path / "good")
    bad = _store(tmp_path / "bad")
    await good.put_chunk(data, digest)
    await bad.put_chunk(data, digest)
    path = bad.chunk_path(digest)
    rotten = bytearray(path.read_bytes())
    rotten[5000] ^= 0xFF
    path.write_bytes(bytes(rotten))
    empty = _store(tmp_path / "empty")
    mine = _store(tmp_path / "mine")
    with good, bad, empty, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            a_bad, p_bad, _ = await _serve(nursery, bad)
            a_empty, p_empty, s_empty = await _serve(nursery, empty)
            a_good, p_good, _ = await _serve(nursery, good)
            client = HttpChunkClient(mine, KEY)
            holders = [(a_bad, p_bad), (a_empty, p_empty), (a_good, p_good)]
            assert await client.fetch(digest, len(data), holders) == (a_good, p_good)
            assert client.bad_holders == {a_bad}
            assert client.digest_mismatches == 1
            assert s_empty.statistics().not_found == 1
            assert (await mine.read_chunk(digest)) == data
            # The bad holder is not asked again during its back-off.
            data2 = os.urandom(1000)
            d2 = hashlib.sha256(data2).digest()
            await bad.put_chunk(data2, d2)
            with pytest.raises(PeerError, match="no usable holder"):
                await client.fetch(d2, len(data2), [(a_bad, p_bad)])
            nursery.cancel_scope.cancel()


async def test_clock_window_follows_the_site_setting(tmp_path: Path) -> None:
    """Issue 16 finding 9: ``max_clock_skew_s = 0`` (no NTP) accepts a member whose clock is
    two hours off; the default window still refuses it."""
    holder = _store(tmp_path / "holder")
    data = b"y" * 1000
    digest = hashlib.sha256(data).digest()
    await holder.put_chunk(data, digest)
    path = f"/chunk/{digest.hex()}".encode()
    with holder, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for skew, expect in ((0.0, b"HTTP/1.1 200"), (60.0, b"HTTP/1.1 403")):
                address = loopback_address()
                server = PeerHttpServer(holder, KEY, max_clock_skew_s=skew)
                port = await nursery.start(server.serve, address, 0)
                stream = await trio.open_tcp_stream(address, port)
                async with stream:
                    conn = h11.Connection(h11.CLIENT)
                    auth = sign(KEY, b"GET", path, time.time() - 7200)
                    req = h11.Request(
                        method="GET", target=path, headers=[(b"host", b"x"), (HEADER, auth)]
                    )
                    await stream.send_all(conn.send(req) + conn.send(h11.EndOfMessage()))
                    raw = await stream.receive_some(4096)
                    assert raw.startswith(expect), (skew, raw[:40])
            nursery.cancel_scope.cancel()


async def test_rotten_holder_drops_its_chunk_and_serves_again_after_backoff(
    tmp_path: Path,
) -> None:
    """Issue 16 finding 8: one rotten chunk file no longer bans its holder for good. The
    member rejects the bytes and tells the holder, which re-checks and drops that chunk; the
    holder is skipped for a back-off only, after which a later healthy chunk comes from it
    (not from the other source, which stands in for the origin)."""
    data = os.urandom(100_000)
    digest = hashlib.sha256(data).digest()
    holder, origin, mine = (_store(tmp_path / n) for n in ("holder", "origin", "mine"))
    await holder.put_chunk(data, digest)
    await origin.put_chunk(data, digest)
    path = holder.chunk_path(digest)
    rotten = bytearray(path.read_bytes())
    rotten[777] ^= 0x01
    path.write_bytes(bytes(rotten))
    now = [1000.0]
    with holder, origin, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            a_h, p_h, s_h = await _serve(nursery, holder)
            a_o, p_o, s_o = await _serve(nursery, origin)
            client = HttpChunkClient(mine, KEY, clock=lambda: now[0])
            both = [(a_h, p_h), (a_o, p_o)]
            assert await client.fetch(digest, len(data), both) == (a_o, p_o)
            assert client.digest_mismatches == 1
            # The holder was told and dropped the rotten file.
            assert s_h.dropped == 1
            assert client.reported_dropped == 1
            assert not holder.has_chunk(digest)
            assert client.bad_holders == {a_h}
            # A later healthy chunk on the holder: skipped during the back-off ...
            data2 = os.urandom(2000)
            d2 = hashlib.sha256(data2).digest()
            await holder.put_chunk(data2, d2)
            await origin.put_chunk(data2, d2)
            assert await client.fetch(d2, len(data2), [(a_h, p_h), (a_o, p_o)]) == (a_o, p_o)
            # ... and fetched from the holder once the back-off has ended.
            now[0] += client.penalties.base_s + 1
            assert client.bad_holders == set()
            data3 = os.urandom(3000)
            d3 = hashlib.sha256(data3).digest()
            await holder.put_chunk(data3, d3)
            await origin.put_chunk(data3, d3)
            served_before = s_o.statistics().served
            assert await client.fetch(d3, len(data3), both) == (a_h, p_h)
            assert s_o.statistics().served == served_before
            nursery.cancel_scope.cancel()


async def test_verify_request_needs_the_key(tmp_path: Path) -> None:
    """An outsider cannot make a holder re-hash (or drop) chunks: verify is signed."""
    holder = _store(tmp_path / "holder")
    data = b"z" * 5000
    digest = hashlib.sha256(data).digest()
    await holder.put_chunk(data, digest)
    with holder, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address, port, _ = await _serve(nursery, holder)
            with pytest.raises(PeerError, match="HTTP 403"):
                await get_chunk(
                    (address, port),
                    digest,
                    b"wrong key",
                    max_bytes=64,
                    what="verify",
                    method=b"POST",
                )
            assert (
                await get_chunk(
                    (address, port), digest, KEY, max_bytes=64, what="verify", method=b"POST"
                )
                == b"good"
            )
            assert holder.has_chunk(digest)
            nursery.cancel_scope.cancel()


async def _raw_signed(address: str, port: int, method: bytes, target: bytes) -> bytes:
    """One signed request sent as raw bytes (any target, even one h11's client would refuse);
    the status line of the answer."""
    stream = await trio.open_tcp_stream(address, port)
    async with stream:
        head = method + b" " + target + b" HTTP/1.1\r\nHost: x\r\n"
        auth = sign(KEY, method, target, time.time())
        extra = b"content-length: 0\r\n" if method == b"POST" else b""
        await stream.send_all(head + HEADER + b": " + auth + b"\r\n" + extra + b"\r\n")
        answer = b""
        while b"\r\n" not in answer and (got := await stream.receive_some(4096)):
            answer += got
        return answer.split(b"\r\n", 1)[0]


async def test_hostile_chunk_names_get_400_and_the_port_serves_on(tmp_path: Path) -> None:
    """The peer port's paths name chunks in hex; a signed request whose name is not exactly
    64 lower-case hex digits (upper case, one short, one long, not hex, empty,
    percent-encoded, a bad name among many trees, an empty tree list, too many) is a bad
    request: 400, no crash, no store lookup. Non-ASCII, NUL or a space in the name is not
    HTTP: the connection closes unanswered."""
    holder = _store(tmp_path / "holder")
    data = b"h" * 3000
    digest = hashlib.sha256(data).digest()
    await holder.put_chunk(data, digest)
    good = digest.hex().encode()
    names = [
        good.upper(),
        good[:-1],
        good + b"0",
        b"zz" * 32,
        b"",
        b"%41" * 21 + b"a",
        good[:32] + b"%20" + good[32:],
    ]
    # Not even HTTP (h11 refuses the target before any route sees it): closed, unanswered.
    not_http = [b"\xc3\xa9" * 32, good[:-2] + b"\x00\x00", good[:32] + b" " + good[32:]]
    targets = [(b"GET", b"/chunk/" + n) for n in names]
    targets += [(b"GET", b"/chunk/" + n + b"/tree") for n in names[:4]]
    targets += [(b"POST", b"/chunk/" + n + b"/verify") for n in names[:4]]
    targets += [
        (b"GET", b"/trees/" + good + b"," + good.upper()),
        (b"GET", b"/trees/"),
        (b"GET", b"/trees/" + good + b",," + good),
        (b"GET", b"/trees/" + good + b","),
        (b"GET", b"/trees/" + b",".join([good] * (MAX_TREES + 1))),
    ]
    with holder, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            address, port, server = await _serve(nursery, holder)
            for method, target in targets:
                status = await _raw_signed(address, port, method, target)
                assert status == b"HTTP/1.1 400 ", (method, target, status)
            for name in not_http:
                assert await _raw_signed(address, port, b"GET", b"/chunk/" + name) == b""
            # A name that is not a chunk route at all is still 404, not 400.
            assert await _raw_signed(address, port, b"GET", b"/chunk/" + good + b"/x") == (
                b"HTTP/1.1 404 "
            )
            assert await get_chunk((address, port), digest, KEY, max_bytes=len(data)) == data
            stats = server.statistics()
            assert (stats.not_found, stats.rejected, server.errors) == (0, 0, 0)
            nursery.cancel_scope.cancel()


async def test_large_chunk_streams_to_disk_and_a_rotten_one_leaves_nothing(
    tmp_path: Path,
) -> None:
    # Above 256 KiB the client streams the body into a temp file while hashing it (no
    # whole-chunk buffer); the holder serves it with sendfile. A rotten copy is refused, its
    # temp file removed, and the next holder's copy adopted.
    data = os.urandom(1 << 20)
    digest = hashlib.sha256(data).digest()
    good = _store(tmp_path / "good")
    bad = _store(tmp_path / "bad")
    await good.put_chunk(data, digest)
    await bad.put_chunk(data, digest)
    path = bad.chunk_path(digest)
    rotten = bytearray(path.read_bytes())
    rotten[700_000] ^= 0xFF
    path.write_bytes(bytes(rotten))
    mine = _store(tmp_path / "mine")
    with good, bad, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            a_bad, p_bad, s_bad = await _serve(nursery, bad)
            a_good, p_good, s_good = await _serve(nursery, good)
            client = HttpChunkClient(mine, KEY)
            holders = [(a_bad, p_bad), (a_good, p_good)]
            assert await client.fetch(digest, len(data), holders) == (a_good, p_good)
            assert client.digest_mismatches == 1
            assert s_bad.statistics().bytes_served == len(data)
            assert s_good.statistics().bytes_served == len(data)
            assert (await mine.read_chunk(digest)) == data
            assert list((mine.tmp_dir / "http").iterdir()) == []
            nursery.cancel_scope.cancel()


async def test_trees_of_many_chunks_in_one_signed_request(tmp_path: Path) -> None:
    """``GET /trees/<hex>,<hex>,...``: the trees this holder has, an empty entry for a chunk
    it lacks; unsigned is refused, too many chunks is a bad request (400), a lying holder is
    penalised and yields nothing."""
    parts = [os.urandom(300_000) for _ in range(3)]
    digests = [hashlib.sha256(p).digest() for p in parts]
    trees = {d: merkle_tree(p) for d, p in zip(digests, parts, strict=True)}
    lie: set[bytes] = set()

    async def tree_of(digest: bytes) -> MerkleTree:
        if digest not in trees:
            raise NotInStoreError(digest.hex())
        tree = trees[digest]
        if digest in lie:  # a piece layer of the wrong length
            return MerkleTree(tree.size, tree.piece_size, tree.root, tree.piece_layer[:-1])
        return tree

    holder, mine = _store(tmp_path / "holder"), _store(tmp_path / "mine")
    absent = hashlib.sha256(b"not held").digest()
    with holder, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = loopback_address()
            server = PeerHttpServer(holder, KEY, trees=tree_of)
            port = await nursery.start(server.serve, address, 0)
            client = HttpChunkClient(mine, KEY)
            ask = {d: len(p) for d, p in zip(digests, parts, strict=True)} | {absent: 10}
            got = await client.fetch_trees(ask, (address, port))
            assert got == {d: trees[d] for d in digests}
            with pytest.raises(PeerError, match="HTTP 403"):
                await signed_request(
                    (address, port),
                    f"/trees/{digests[0].hex()}",
                    b"wrong key",
                    max_bytes=99,
                    what="t",
                )
            with pytest.raises(PeerError, match="HTTP 400"):
                await signed_request(
                    (address, port),
                    "/trees/" + ",".join([digests[0].hex()] * (MAX_TREES + 1)),
                    KEY,
                    max_bytes=1 << 20,
                    what="t",
                )
            lie.add(digests[1])
            assert await client.fetch_trees(ask, (address, port)) == {}
            assert address in client.bad_holders
            nursery.cancel_scope.cancel()


def test_trees_answer_round_trip_and_hostile_bodies() -> None:
    trees = [b"r" * 32 + b"l" * 64, None, b"x" * 32]
    body = pack_trees(trees)
    assert unpack_trees(body, 3) == trees
    for bad in (body[:-1], body + b"\0", body[:1]):
        with pytest.raises(ValueError, match="trees answer"):
            unpack_trees(bad, 3)


async def test_requests_leave_from_the_nodes_own_address(tmp_path: Path) -> None:
    """The holder admits a signed request's source to its libtorrent port; that source is the
    node's own address (where its swarm dials from), not the kernel's pick (127.0.0.1 here)."""
    data = os.urandom(1000)
    digest = hashlib.sha256(data).digest()
    holder, mine = _store(tmp_path / "holder"), _store(tmp_path / "mine")
    await holder.put_chunk(data, digest)
    mine_at = loopback_address()
    admitted: list[str] = []
    with holder, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = loopback_address()
            server = PeerHttpServer(holder, KEY, on_member=admitted.append)
            port = await nursery.start(server.serve, address, 0)
            await HttpChunkClient(mine, KEY, local_address=mine_at).fetch(
                digest, len(data), [(address, port)]
            )
            # An address of another family than the holder's is not bound: the kernel picks.
            body = await get_chunk(
                (address, port), digest, KEY, max_bytes=1000, local_address="::1"
            )
            assert body == data
            nursery.cancel_scope.cancel()
    assert admitted == [mine_at, "127.0.0.1"]
