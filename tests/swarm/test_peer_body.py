"""Peer HTTP bodies read straight off the socket (``_peer_wire.receive_body``): whole, in few
pieces, and safe against holders that frame them wrong. Real loopback sockets; the hostile
holders are raw TCP servers that write what they like after reading the request."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio

from frumitcache.errors import PeerError
from frumitcache.store import Store
from frumitcache.swarm._peer_client import HttpChunkClient, get_chunk
from frumitcache.swarm._peer_http import PeerHttpServer
from frumitcache.testing.net import loopback_address

KEY = os.urandom(32)

Writer = Callable[[trio.SocketStream], Awaitable[None]]


async def _raw_holder(nursery: trio.Nursery, write: Writer) -> tuple[str, int]:
    """A holder that reads the request head and then lets ``write`` answer."""
    address = loopback_address()

    async def handle(stream: trio.SocketStream) -> None:
        # The client hangs up once it has what it wanted (or refused the head).
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await answer(stream)

    async def answer(stream: trio.SocketStream) -> None:
        async with stream:
            seen = b""
            while b"\r\n\r\n" not in seen:
                data = await stream.receive_some(4096)
                if not data:
                    return
                seen += data
            await write(stream)

    listeners = await trio.open_tcp_listeners(0, host=address)
    nursery.start_soon(trio.serve_listeners, handle, listeners)
    return address, int(listeners[0].socket.getsockname()[1])


def _head(length: int) -> bytes:
    return f"HTTP/1.1 200 OK\r\ncontent-length: {length}\r\n\r\n".encode()


async def test_a_body_trickled_in_small_sends_arrives_whole_in_few_pieces() -> None:
    # The head and the first body bytes in one segment (h11 reads them together), then 4 MiB
    # in 1 KiB sends: every byte reaches the sink once, in order, and the reader is woken by
    # the kernel per 128 KiB gathered, not per send.
    body = os.urandom(4 << 20)

    async def write(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(body)) + body[:1000])
        for at in range(1000, len(body), 1024):
            await stream.send_all(body[at : at + 1024])

    pieces: list[bytes] = []
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            holder = await _raw_holder(nursery, write)
            got = await get_chunk(
                holder, b"\0" * 32, KEY, max_bytes=len(body), sink=lambda v: pieces.append(bytes(v))
            )
            nursery.cancel_scope.cancel()
    assert got == b""
    assert b"".join(pieces) == body
    assert len(pieces) <= 64


async def test_a_small_body_without_a_sink_is_returned() -> None:
    body = os.urandom(700)

    async def write(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(body)))
        await trio.sleep(0.05)
        await stream.send_all(body)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            holder = await _raw_holder(nursery, write)
            assert await get_chunk(holder, b"\0" * 32, KEY, max_bytes=1000) == body
            nursery.cancel_scope.cancel()


async def test_hostile_holders_cut_short_overlong_and_over_the_limit(tmp_path: Path) -> None:
    # A holder that closes before its Content-Length, one that sends more than it, and one
    # that announces more than the chunk's size: the first is a failed fetch (the next holder
    # is asked, no temp file stays), the second's extra bytes are never read as the chunk's,
    # the third is refused on its head.
    data = os.urandom(1 << 20)
    digest = hashlib.sha256(data).digest()

    async def short(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(data)) + data[:600_000])

    async def overlong(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(data)) + data + b"trailing garbage" * 1000)

    async def huge(stream: trio.SocketStream) -> None:
        await stream.send_all(_head(len(data) + 1) + data)

    good = Store.open(tmp_path / "good", max_bytes=1 << 30, chunk_size=1 << 20)
    await good.put_chunk(data, digest)
    mine = Store.open(tmp_path / "mine", max_bytes=1 << 30, chunk_size=1 << 20)
    with good, mine, trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            h_short = await _raw_holder(nursery, short)
            h_huge = await _raw_holder(nursery, huge)
            h_long = await _raw_holder(nursery, overlong)
            address = loopback_address()
            port = await nursery.start(PeerHttpServer(good, KEY).serve, address, 0)
            with pytest.raises(PeerError, match="closed after 600000 of 1048576"):
                await get_chunk(h_short, digest, KEY, max_bytes=len(data), sink=lambda v: None)
            with pytest.raises(PeerError, match="longer than"):
                await get_chunk(h_huge, digest, KEY, max_bytes=len(data), sink=lambda v: None)
            client = HttpChunkClient(mine, KEY)
            holders = [h_short, h_huge, (address, port)]
            assert await client.fetch(digest, len(data), holders) == (address, port)
            assert client.digest_mismatches == 0
            assert list((mine.tmp_dir / "http").iterdir()) == []
            assert (await mine.read_chunk(digest)) == data
            other = Store.open(tmp_path / "other", max_bytes=1 << 30, chunk_size=1 << 20)
            with other:
                took = await HttpChunkClient(other, KEY).fetch(digest, len(data), [h_long])
                assert took == h_long
                assert (await other.read_chunk(digest)) == data
            nursery.cancel_scope.cancel()
