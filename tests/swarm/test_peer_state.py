"""``GET /chunk/<hex>/state`` on the peer port, between real loopback sockets: a member
waiting for a chunk assigned to a fellow asks that fellow whether it is fetching it before it
turns to the seeder (tests/swarm/test_widen.py has the waiting side)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
import trio

from frumitcache.errors import PeerError
from frumitcache.store import Store
from frumitcache.swarm._peer_client import HttpChunkClient, get_chunk
from frumitcache.swarm._peer_http import PeerHttpServer
from frumitcache.testing.net import free_port, loopback_address

KEY = os.urandom(32)


class _Activity:
    def __init__(self, fetching: set[bytes], busy: bool) -> None:
        self.fetching = fetching
        self.busy = busy

    def is_fetching(self, digest: bytes) -> bool:
        return digest in self.fetching

    def is_busy(self) -> bool:
        return self.busy


async def test_state_answers_held_fetching_absent_idle(tmp_path: Path) -> None:
    held = b"h" * 1000
    held_digest = hashlib.sha256(held).digest()
    fetching_digest = hashlib.sha256(b"being fetched").digest()
    absent_digest = hashlib.sha256(b"nowhere").digest()
    holder = Store.open(tmp_path / "holder", max_bytes=1 << 30, chunk_size=1 << 20)
    mine = Store.open(tmp_path / "mine", max_bytes=1 << 30, chunk_size=1 << 20)
    await holder.put_chunk(held, held_digest)
    with holder, mine, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            address = loopback_address()
            server = PeerHttpServer(holder, KEY)
            port = await nursery.start(server.serve, address, 0)
            client = HttpChunkClient(mine, KEY)
            # Before the site link wires the fetcher in, this node fetches nothing.
            assert await client.chunk_state((address, port), fetching_digest) == b"idle"
            activity = _Activity({fetching_digest}, busy=True)
            server.activity = activity
            assert await client.chunk_state((address, port), held_digest) == b"held"
            assert await client.chunk_state((address, port), fetching_digest) == b"fetching"
            assert await client.chunk_state((address, port), absent_digest) == b"absent"
            activity.fetching, activity.busy = set(), False
            assert await client.chunk_state((address, port), absent_digest) == b"idle"
            assert await client.chunk_state((address, port), held_digest) == b"held"
            # Hostile: the wrong key is refused (403), a malformed name is a bad request.
            with pytest.raises(PeerError, match="HTTP 403"):
                await get_chunk((address, port), held_digest, b"wrong", max_bytes=16, what="state")
            with pytest.raises(PeerError, match="HTTP 400"):
                await get_chunk((address, port), b"\x01\x02", KEY, max_bytes=16, what="state")
            assert server.statistics().served == 0  # no chunk body was sent
            nursery.cancel_scope.cancel()


async def test_state_of_a_gone_holder_is_none(tmp_path: Path) -> None:
    mine = Store.open(tmp_path / "mine", max_bytes=1 << 30, chunk_size=1 << 20)
    with mine, trio.fail_after(10):
        client = HttpChunkClient(mine, KEY)
        # Nothing listens there: no answer, so the waiting member turns to the seeder.
        lonely = loopback_address()
        gone = (lonely, free_port(lonely))
        assert await client.chunk_state(gone, hashlib.sha256(b"x").digest()) is None
