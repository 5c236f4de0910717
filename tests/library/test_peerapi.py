"""The member-to-member prefetch, keys and bulk requests on the peer HTTP port: signed, not
replayable, and answered by the agent's callbacks."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from frumitcache._signing import sign
from frumitcache.agent._peerapi import (
    PrefetchPeerHttpServer,
    encode_target,
    request_bulk,
    request_keys,
    request_prefetch,
)
from frumitcache.errors import NotInStoreError, PeerError
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address

KEY = b"k" * 32
DIGEST = bytes(range(32))


class Agent:
    def __init__(self) -> None:
        self.asked: list[tuple[str, bytes | None]] = []

    def prefetch(self, url: str, sha256: bytes | None) -> str:
        if url.endswith("/refuse"):
            raise NotInStoreError("no room")
        self.asked.append((url, sha256))
        return "fetching"

    def keys(self, digest: bytes) -> list[str]:
        return ["http://origin/a.deb"] if digest == DIGEST else []

    def bulk(self, token: int) -> bytes | None:
        return b"body-" * 20_000 if token == 7 else None  # 100 kB: more than a control frame


@pytest.fixture
async def server(
    tmp_path: Path, nursery: trio.Nursery
) -> AsyncIterator[tuple[tuple[str, int], Agent]]:
    agent = Agent()
    with Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=1 << 20) as store:
        http = PrefetchPeerHttpServer(
            store, KEY, prefetch=agent.prefetch, keys=agent.keys, bulk=agent.bulk
        )
        address = loopback_address()
        port = await nursery.start(http.serve, address, 0)
        yield (address, port), agent
        nursery.cancel_scope.cancel()


async def raw_post(address: tuple[str, int], path: bytes, auth: bytes | None) -> bytes:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        head = b"POST " + path + b" HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n"
        if auth is not None:
            head += b"x-frumit-auth: " + auth + b"\r\n"
        await stream.send_all(head + b"connection: close\r\n\r\n")
        reply = b""
        while data := await stream.receive_some(65536):
            reply += data
    return reply


async def test_signed_requests_are_answered(server: tuple[tuple[str, int], Agent]) -> None:
    address, agent = server
    with trio.fail_after(10):
        assert await request_prefetch(address, KEY, "http://o/x", DIGEST) == "fetching"
        assert agent.asked == [("http://o/x", DIGEST)]
        assert await request_keys(address, KEY, DIGEST) == ["http://origin/a.deb"]
        assert await request_keys(address, KEY, b"\xff" * 32) == []
        with pytest.raises(PeerError, match="409"):
            await request_prefetch(address, KEY, "http://o/refuse", None)


async def test_unsigned_wrong_key_and_replayed_requests_are_refused(
    server: tuple[tuple[str, int], Agent],
) -> None:
    address, agent = server
    path = encode_target("http://o/y", None)
    with trio.fail_after(10):
        with pytest.raises(PeerError, match="403"):
            await request_prefetch(address, b"w" * 32, "http://o/y", None)
        assert (await raw_post(address, path, None)).startswith(b"HTTP/1.1 403")
        auth = sign(KEY, b"POST", path, time.time(), nonce="0123456789abcdef")
        assert (await raw_post(address, path, auth)).startswith(b"HTTP/1.1 200")
        assert (await raw_post(address, path, auth)).startswith(b"HTTP/1.1 403")  # replay
        # The signature covers the path: the same header on another URL is refused.
        other = encode_target("http://o/z", None)
        auth = sign(KEY, b"POST", path, time.time(), nonce="fedcba9876543210")
        assert (await raw_post(address, other, auth)).startswith(b"HTTP/1.1 403")
        garbage = b"/prefetch/!!!"
        auth = sign(KEY, b"POST", garbage, time.time())
        assert (await raw_post(address, garbage, auth)).startswith(b"HTTP/1.1 400")
    assert agent.asked == [("http://o/y", None)]


async def raw_get(address: tuple[str, int], path: bytes, auth: bytes | None) -> bytes:
    stream = await trio.open_tcp_stream(*address)
    async with stream:
        head = b"GET " + path + b" HTTP/1.1\r\nhost: x\r\n"
        if auth is not None:
            head += b"x-frumit-auth: " + auth + b"\r\n"
        await stream.send_all(head + b"connection: close\r\n\r\n")
        reply = b""
        while data := await stream.receive_some(65536):
            reply += data
    return reply


async def test_bulk_bodies_go_to_members_only(server: tuple[tuple[str, int], Agent]) -> None:
    address, _agent = server
    with trio.fail_after(10):
        assert await request_bulk(address, KEY, 7, 100_000) == b"body-" * 20_000
        # Gone (or never given out), a wrong key, no signature, a token that is not a number.
        with pytest.raises(PeerError, match="404"):
            await request_bulk(address, KEY, 8, 100_000)
        with pytest.raises(PeerError, match="403"):
            await request_bulk(address, b"w" * 32, 7, 100_000)
        assert (await raw_get(address, b"/bulk/7", None)).startswith(b"HTTP/1.1 403")
        for bad in (b"/bulk/-7", b"/bulk/7x", b"/bulk/" + b"9" * 40):
            auth = sign(KEY, b"GET", bad, time.time())
            assert (await raw_get(address, bad, auth)).startswith(b"HTTP/1.1 404"), bad
        # A body longer than the frame said is cut off, not read to the end.
        with pytest.raises(PeerError, match="too long"):
            await request_bulk(address, KEY, 7, 10_000)
