"""Tunnels through the uplink (apt's CONNECT): a TCP stream to an allow-listed upstream whose
every byte, both ways, is paced by the uplink budget and counted with the origin fetches.

The connection check is the fetcher's: the name must pass the tunnel's own list, and the
connection goes only to an address that list admits (a pattern never reaches loopback, the LAN
or this host), the very address that was checked. ``origin.proxy`` does not carry tunnels.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from frumitcache.errors import NotAllowedError, OriginUnreachableError
from frumitcache.origin._allow import AllowList

# Called with the byte count and which way they went ("in": from the upstream).
Account = Callable[[int, str], Awaitable[None]]


class UplinkStream(trio.abc.HalfCloseableStream):
    """A stream to an upstream through the uplink: reads and writes are paced and counted by
    ``account`` before they go on (a read is counted once it arrived, before it is handed on)."""

    def __init__(self, inner: trio.SocketStream, account: Account) -> None:
        self._inner = inner
        self._account = account

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._account(len(data), "out")
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        data = await self._inner.receive_some(max_bytes)
        if data:
            await self._account(len(data), "in")
        return data

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


def host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 literal in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def connect_checked(
    host: str,
    port: int,
    allow: AllowList,
    timeout_s: float,
    resolve: Callable[..., Any] = trio.socket.getaddrinfo,
) -> trio.SocketStream:
    """Resolve ``host``, keep the addresses ``allow`` admits for it, connect to the first that
    answers. :class:`NotAllowedError` when the name or every address is refused,
    :class:`OriginUnreachableError` when none can be reached in ``timeout_s``."""
    shown = host_port(host, port)
    if not allow.admits_name(host, port, "https"):
        raise NotAllowedError(f"{shown} is not on {allow.key}")
    try:
        with trio.fail_after(timeout_s):
            infos = await resolve(host, port, type=socket.SOCK_STREAM)
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            admitted = [a for a in addresses if allow.admits_address(host, ipaddress.ip_address(a))]
            if not admitted:
                raise NotAllowedError(
                    f"{host} resolves to {', '.join(addresses) or 'nothing'}: a loopback, "
                    f"private, link-local or own address, which only an explicit entry in "
                    f"{allow.key} admits"
                )
            error: OSError | None = None
            for address in admitted:
                try:
                    return await trio.open_tcp_stream(address, port)
                except OSError as exc:
                    error = exc
            raise OriginUnreachableError(f"cannot reach {shown}: {error}")
    except trio.TooSlowError:
        raise OriginUnreachableError(f"cannot reach {shown}: timed out") from None
    except OSError as exc:
        raise OriginUnreachableError(f"cannot reach {shown}: {exc}") from exc
