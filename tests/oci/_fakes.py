"""An in-memory :class:`~frumitcache.content.ContentSource` for the registry door's tests."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import trio

from frumitcache.content import ContentInfo, ContentRequest, HttpMeta, Piece, UpstreamAuth
from frumitcache.errors import DigestMismatchError, FrumitcacheError, OriginStatusError
from frumitcache.origin import Door


@dataclass
class MemoryContent:
    data: bytes
    info: ContentInfo

    @asynccontextmanager
    async def read(self, start: int, end: int) -> AsyncIterator[AsyncIterator[bytes]]:
        async def pieces() -> AsyncIterator[bytes]:
            for i in range(start, end, 1000):  # several pieces, as a real read gives
                await trio.lowlevel.checkpoint()
                yield self.data[i : min(end, i + 1000)]

        yield pieces()

    @asynccontextmanager
    async def read_files(self, start: int, end: int) -> AsyncIterator[AsyncIterator[Piece]]:
        async with self.read(start, end) as pieces:
            yield pieces


@dataclass
class MemorySource:
    """URL → (bytes, Content-Type). Requests by digest find bytes under any URL."""

    objects: dict[str, tuple[bytes, str | None]] = field(default_factory=dict)
    errors: dict[str, FrumitcacheError] = field(default_factory=dict)
    requests: list[ContentRequest] = field(default_factory=list)

    def add(self, url: str, data: bytes, content_type: str | None = None) -> str:
        self.objects[url] = (data, content_type)
        return "sha256:" + hashlib.sha256(data).hexdigest()

    async def open(self, request: ContentRequest) -> MemoryContent:
        self.requests.append(request)
        await trio.lowlevel.checkpoint()
        if request.url in self.errors:
            raise self.errors[request.url]
        found = self.objects.get(request.url)
        if found is None and request.sha256 is not None:
            found = next(
                (
                    o
                    for o in self.objects.values()
                    if hashlib.sha256(o[0]).digest() == request.sha256
                ),
                None,
            )
        if found is None:
            raise OriginStatusError(f"{request.url}: 404", status=404)
        data, ctype = found
        if request.sha256 is not None and hashlib.sha256(data).digest() != request.sha256:
            raise DigestMismatchError(f"{request.url} does not match its digest")
        info = ContentInfo(len(data), None, HttpMeta(content_type=ctype), "uplink")
        return MemoryContent(data, info)

    def set_upstream_auth(self, door: Door, auth: UpstreamAuth) -> None:
        pass
