"""Raw-socket helpers for the origin tests (what httpx would hide)."""

from __future__ import annotations

import trio

from frumitcache.store import Store
from frumitcache.testing.origin import OriginServer


async def raw_exchange(server: OriginServer, request: bytes, *, limit: float = 5) -> bytes:
    """Send ``request`` on a fresh connection and read until the server closes it."""
    received = bytearray()
    with trio.fail_after(limit):
        stream = await trio.open_tcp_stream(server.address, server.port)
        async with stream:
            await stream.send_all(request)
            while True:
                try:
                    data = await stream.receive_some(65536)
                except trio.BrokenResourceError:  # reset by the server
                    break
                if not data:
                    break
                received += data
    return bytes(received)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


async def stored_bytes(store: Store, key: str) -> bytes:
    """The complete object ``key`` names, read back from the store."""
    async with store.open_reader(key) as reader:
        return await reader.readall()
