"""The uplink transport is built at its first request: an agent that never talks to an origin
(a site member, most of the time) never loads the CA bundle, and the connection guard holds
for what it builds later."""

from __future__ import annotations

import hashlib
import socket
from typing import Any

import httpx
import pytest
import trio

from frumitcache.errors import NotAllowedError, OriginError
from frumitcache.origin import OriginFetcher
from frumitcache.origin._allow import AllowList
from frumitcache.origin._uplink import LazyTransport, uplink_transport
from frumitcache.testing.origin import OriginServer

DATA = b"uplink " * 5000


async def test_built_at_the_first_request_and_kept(origin: OriginServer) -> None:
    origin.add("/a.bin", DATA)
    transport = uplink_transport("", AllowList.parse(["127.0.0.0/8:*"], "origin.allow"))
    built_before = transport.built
    async with httpx.AsyncClient(transport=transport) as client:
        with trio.fail_after(10):
            first = await client.get(origin.url("/a.bin"))
            built_after = transport.built
            second = await client.get(origin.url("/a.bin"))
    assert (built_before, built_after) == (False, True)
    assert first.content == second.content == DATA


async def test_fetcher_fetches_through_it(origin: OriginServer, fetcher: OriginFetcher) -> None:
    origin.add("/a.bin", DATA)
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/a.bin"))
    assert manifest.digest == hashlib.sha256(DATA).digest()


async def test_guard_holds_on_the_lazily_built_transport(origin: OriginServer) -> None:
    # Hostile (DNS rebinding): "*:*" admits the name and it resolves to loopback; the guard,
    # installed when the transport is built, refuses the address and dials nothing.
    origin.add("/a.bin", DATA)
    port = int(origin.url("/").split("/")[2].rsplit(":", 1)[1])

    async def resolve(host: str, port: int, **_: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    transport = uplink_transport("", AllowList.parse(["*:*"], "origin.allow"), resolve)
    async with httpx.AsyncClient(transport=transport) as client:
        with trio.fail_after(10), pytest.raises(NotAllowedError, match=r"127\.0\.0\.1"):
            await client.get(f"http://rebind.example:{port}/a.bin")
    assert not origin.stats.log


async def test_a_transport_that_cannot_be_built_fails_each_request() -> None:
    # Hostile: building fails (here: as when the guard cannot be installed); every request
    # raises our error, none is sent, and a later request tries again.
    built: list[int] = []

    def build() -> httpx.AsyncBaseTransport:
        built.append(1)
        raise OriginError("cannot guard origin connections with this httpx/httpcore")

    transport = LazyTransport(build)
    async with httpx.AsyncClient(transport=transport) as client:
        for _ in range(2):
            with pytest.raises(OriginError, match="cannot guard"):
                await client.get("http://origin.invalid/x")
    assert len(built) == 2
    assert not transport.built
