"""An in-memory ContentSource and a raw HTTP client, to test the proxy without store or origin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from frumitcache.content import (
    Content,
    ContentInfo,
    ContentRequest,
    HttpMeta,
    Piece,
    Provenance,
    UpstreamAuth,
    http_date,
)
from frumitcache.errors import FrumitcacheError
from frumitcache.origin import Door


@dataclass
class OpenCall:
    url: str
    freshness: str
    expected_sha256: str | None
    expected_size: int | None


@dataclass
class MemoryContent:
    data: bytes
    info: ContentInfo
    expected_sha256: str | None
    piece: int = 1000

    @asynccontextmanager
    async def read(self, start: int, end: int) -> AsyncIterator[AsyncIterator[bytes]]:
        yield self._pieces(start, end)

    @asynccontextmanager
    async def read_files(self, start: int, end: int) -> AsyncIterator[AsyncIterator[Piece]]:
        yield self._pieces(start, end)

    async def _pieces(self, start: int, end: int) -> AsyncIterator[bytes]:
        # No digest check here: the tests of digest checks run the product's own source.
        for pos in range(start, end, self.piece):
            await trio.lowlevel.checkpoint()
            yield self.data[pos : min(end, pos + self.piece)]


@dataclass
class MemorySource:
    """An in-memory :class:`frumitcache.content.ContentSource`."""

    files: dict[str, tuple[bytes, float]] = field(default_factory=dict)
    errors: dict[str, FrumitcacheError] = field(default_factory=dict)
    calls: list[OpenCall] = field(default_factory=list)
    held: set[str] = field(default_factory=set)

    def add(self, url: str, data: bytes, last_modified: float = 1_700_000_000.0) -> None:
        self.files[url] = (data, last_modified)

    def set_upstream_auth(self, door: Door, auth: UpstreamAuth) -> None:
        raise NotImplementedError

    async def open(self, request: ContentRequest) -> Content:
        url = request.url
        sha = request.sha256.hex() if request.sha256 is not None else None
        self.calls.append(OpenCall(url, request.freshness, sha, request.size))
        await trio.lowlevel.checkpoint()
        if url in self.errors:
            raise self.errors[url]
        from frumitcache.errors import OriginStatusError

        if url not in self.files:
            raise OriginStatusError(f"{url}: 404", status=404)
        data, lm = self.files[url]
        source: Provenance = "local" if url in self.held else "uplink"
        self.held.add(url)
        info = ContentInfo(
            size=len(data),
            sha256=None,
            meta=HttpMeta(None, f'"{len(data)}"', http_date(lm)),
            provenance=source,
        )
        return MemoryContent(data, info, sha)


@dataclass
class Reply:
    status: int
    reason: bytes
    headers: dict[str, str]
    body: bytes


async def read_reply(stream: trio.abc.Stream, buf: bytearray, *, head: bool = False) -> Reply:
    """One response from ``stream`` (``buf`` holds bytes read past the previous one)."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(bytes(buf))
        buf += data
    raw_head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = raw_head.split(b"\r\n")
    _version, status, reason = ([*lines[0].split(b" ", 2), b""])[:3]
    headers = {}
    for line in lines[1:]:
        k, _, v = line.partition(b":")
        headers[k.decode().strip().lower()] = v.decode().strip()
    length = 0 if head or int(status) in (304,) else int(headers.get("content-length", "0"))
    body = bytearray(rest)
    while len(body) < length:
        data = await stream.receive_some(65536)
        if not data:
            raise EOFError(bytes(body))
        body += data
    buf[:] = body[length:]
    return Reply(int(status), reason, headers, bytes(body[:length]))


async def exchange(addr: tuple[str, int], raw: bytes, *, head: bool = False) -> Reply:
    stream = await trio.open_tcp_stream(*addr)
    async with stream:
        await stream.send_all(raw)
        return await read_reply(stream, bytearray(), head=head)


async def read_all(stream: trio.abc.Stream) -> bytes:
    out = bytearray()
    while data := await stream.receive_some(65536):
        out += data
    return bytes(out)
