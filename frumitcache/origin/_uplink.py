"""The uplink's httpx transport, built at its first request.

Building an ``httpx.AsyncHTTPTransport`` loads the CA bundle into a TLS context: about 3 MB of
an agent's RSS. In a site only the seeder talks to origins, so a member that never does (most
of them, most of the time) never pays it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import trio

from frumitcache.errors import OriginError
from frumitcache.origin._allow import AllowList, install_guard


class LazyTransport(httpx.AsyncBaseTransport):
    """An ``httpx.AsyncBaseTransport`` that builds the real one at its first request."""

    def __init__(self, build: Callable[[], httpx.AsyncBaseTransport]) -> None:
        self._build = build
        self._inner: httpx.AsyncBaseTransport | None = None

    @property
    def built(self) -> bool:
        return self._inner is not None

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._inner is None:
            self._inner = self._build()
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()


def uplink_transport(
    proxy: str, allow: AllowList, resolve: Callable[..., Any] = trio.socket.getaddrinfo
) -> LazyTransport:
    """The guarded transport to origins (through ``proxy`` if set), built when first used;
    the guard checks each address ``resolve`` gives before it is dialled."""

    def build() -> httpx.AsyncBaseTransport:
        transport = httpx.AsyncHTTPTransport(proxy=httpx.Proxy(proxy) if proxy else None)
        if not proxy and not install_guard(transport, allow, resolve):
            # Refuse to connect unguarded rather than let a name resolve to loopback.
            raise OriginError("cannot guard origin connections with this httpx/httpcore")
        return transport

    return LazyTransport(build)
