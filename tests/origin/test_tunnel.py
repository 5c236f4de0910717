"""The uplink tunnel's connection check (apt's CONNECT): the name passes the tunnel's list and
the connection goes only to an address that list admits, as for origin fetches."""

from __future__ import annotations

import socket
from typing import Any

import pytest
import trio

from frumitcache.errors import NotAllowedError, OriginUnreachableError
from frumitcache.origin import AllowList
from frumitcache.origin._tunnel import connect_checked
from frumitcache.testing.net import loopback_address


def resolver(address: str) -> Any:
    async def resolve(host: str, port: int, **_: Any) -> list[tuple[Any, ...]]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    return resolve


async def test_a_pattern_never_tunnels_to_loopback() -> None:
    # "*:*" admits the name, but it resolves to loopback: refused before any connection.
    allow = AllowList.parse(["*:*"], "apt.connect_allowed_hosts")
    with pytest.raises(NotAllowedError, match="loopback"):
        await connect_checked("mirror.example", 443, allow, 5, resolver("127.0.0.1"))


async def test_a_name_off_the_list_is_refused() -> None:
    allow = AllowList.parse(["mirror.example"], "apt.connect_allowed_hosts")
    with pytest.raises(NotAllowedError, match=r"apt\.connect_allowed_hosts"):
        await connect_checked("other.example", 443, allow, 5, resolver("93.184.216.34"))
    # Without a port an entry admits 443 only.
    with pytest.raises(NotAllowedError):
        await connect_checked("mirror.example", 25, allow, 5, resolver("93.184.216.34"))


async def test_an_explicit_entry_reaches_its_address(nursery: trio.Nursery) -> None:
    address = loopback_address()
    listeners = await trio.open_tcp_listeners(0, host=address)
    port = listeners[0].socket.getsockname()[1]

    async def hello(stream: trio.SocketStream) -> None:
        async with stream:
            await stream.send_all(b"hi")

    nursery.start_soon(trio.serve_listeners, hello, listeners)
    allow = AllowList.parse([f"mirror.lan:{port}"], "apt.connect_allowed_hosts")
    with trio.fail_after(5):
        stream = await connect_checked("mirror.lan", port, allow, 5, resolver(address))
        async with stream:
            assert await stream.receive_some(10) == b"hi"


async def test_an_upstream_that_refuses_is_unreachable() -> None:
    address = loopback_address()
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind((address, 0))
        port = probe.getsockname()[1]
    allow = AllowList.parse([f"{address}:{port}"], "apt.connect_allowed_hosts")
    with trio.fail_after(5), pytest.raises(OriginUnreachableError):
        await connect_checked(address, port, allow, 5, resolver(address))
