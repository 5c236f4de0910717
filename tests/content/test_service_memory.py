"""The agent's content service behind the seam, in memory: no sockets, no processes.

The origin is an in-memory httpx transport that records every request; the service runs
on a real store in a temporary directory and a real :class:`OriginFetcher`, with the clock
handed in (the freshness window reads only that clock, so a test moves time by assignment and
nothing races real time). A front door is driven over a ``memory_stream_pair``. The same
behaviours are tested through real agent processes elsewhere; these pin the engine's rules
where a failure names the rule.
"""

from __future__ import annotations

import gc
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from pathlib import Path

import httpx
import pytest
import trio
import trio.testing

from frumitcache.agent import ContentService
from frumitcache.apt import AptProxy
from frumitcache.config import AptConfig, OriginConfig
from frumitcache.content import Content, ContentRequest, ContentSource
from frumitcache.errors import NotAllowedError, OriginStatusError
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store

WINDOW_S = 30.0
CHUNK = 64 * 1024
URL = "http://mirror.example/debian/pool/main/h/hello/hello_1_all.deb"
INDEX = "http://mirror.example/debian/dists/stable/InRelease"


@dataclass
class MemoryOrigin(httpx.AsyncBaseTransport):
    """Objects by URL with an ETag each; answers conditional GETs with 304. A transport, not
    ``httpx.MockTransport``, so bodies stream as from a socket (MockTransport reads them)."""

    files: dict[str, bytes] = field(default_factory=dict)
    etags: dict[str, str] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    # A GET waits for this before answering: concurrent callers pile up behind it.
    gate: trio.Event | None = None

    def put(self, url: str, data: bytes) -> None:
        self.files[url] = data
        self.etags[url] = f'"v{len(self.etags) + 1}"'

    def gets(self, url: str) -> list[httpx.Request]:
        return [r for r in self.requests if str(r.url) == url and r.method == "GET"]

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.gate is not None:
            await self.gate.wait()
        url = str(request.url)
        if url not in self.files:
            return httpx.Response(404, text="not here")
        etag = self.etags[url]
        headers = {
            "ETag": etag,
            "Content-Type": "application/vnd.debian.binary-package",
            "Last-Modified": formatdate(1_700_000_000, usegmt=True),
        }
        if request.headers.get("if-none-match") == etag:
            return httpx.Response(304, headers=headers)
        data = self.files[url]
        start = 0
        ranged = request.headers.get("range", "")
        if ranged.startswith("bytes=") and ranged.endswith("-"):
            start = int(ranged[6:-1])
            headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
        headers["Content-Length"] = str(len(data) - start)
        body = httpx.ByteStream(data[start:])
        return httpx.Response(206 if start else 200, headers=headers, stream=body)


@dataclass
class Node:
    origin: MemoryOrigin
    service: ContentService
    store: Store
    now: float = 1000.0

    @property
    def source(self) -> ContentSource:
        return self.service.source

    def clock(self) -> float:
        return self.now

    async def read_all(self, request: ContentRequest) -> tuple[Content, bytes]:
        content = await self.source.open(request)
        got = bytearray()
        async with content.read(0, content.info.size) as pieces:
            async for piece in pieces:
                got += piece
        return content, bytes(got)


@asynccontextmanager
async def one_node(tmp_path: Path) -> AsyncIterator[Node]:
    origin = MemoryOrigin()
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK)
    fetcher = OriginFetcher(
        OriginConfig(allow=["mirror.example"], retries=1),
        store,
        transport=origin,
    )
    try:
        async with trio.open_nursery() as nursery:
            node: Node | None = None

            def clock() -> float:
                assert node is not None
                return node.now

            service = ContentService(store, fetcher, nursery, index_window_s=WINDOW_S, clock=clock)
            node = Node(origin, service, store)
            yield node
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        store.close()


async def test_concurrent_opens_share_one_origin_fetch(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1000  # several chunks
    async with one_node(tmp_path) as node:
        node.origin.put(URL, data)
        node.origin.gate = trio.Event()
        results: list[tuple[str, bytes]] = []

        async def client() -> None:
            content, got = await node.read_all(ContentRequest(URL, "apt"))
            results.append((content.info.provenance, got))

        with trio.fail_after(10):
            async with trio.open_nursery() as clients:
                for _ in range(5):
                    clients.start_soon(client)
                # Every client asked before the origin answers anyone.
                await trio.testing.wait_all_tasks_blocked()
                node.origin.gate.set()
            assert len(node.origin.gets(URL)) == 1
            assert [got for _, got in results] == [data] * 5
            assert {provenance for provenance, _ in results} == {"uplink"}
            # Held now: served from the store, the origin not asked again.
            content, got = await node.read_all(ContentRequest(URL, "apt"))
        assert got == data
        assert content.info.provenance == "local"
        assert len(node.origin.gets(URL)) == 1


async def test_the_origins_metadata_comes_with_the_object(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        node.origin.put(URL, b"deb bytes")
        with trio.fail_after(10):
            first, _ = await node.read_all(ContentRequest(URL, "apt"))
            again, _ = await node.read_all(ContentRequest(URL, "apt"))
    for content in (first, again):  # fetched, then from the store: the same metadata
        assert content.info.meta.etag == '"v1"'
        assert content.info.meta.content_type == "application/vnd.debian.binary-package"
        assert content.info.meta.last_modified == formatdate(1_700_000_000, usegmt=True)
        assert content.info.size == len(b"deb bytes")


async def test_revalidated_once_per_window_then_conditionally(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        node.origin.put(INDEX, b"index v1")
        ask = ContentRequest(INDEX, "apt", freshness="revalidate")
        with trio.fail_after(10):
            _, got = await node.read_all(ask)
            assert got == b"index v1"
            node.now += WINDOW_S - 1  # inside the window: served as held, origin not asked
            content, got = await node.read_all(ask)
            assert (content.info.provenance, got) == ("local", b"index v1")
            assert len(node.origin.gets(INDEX)) == 1

            node.now += 2  # past it: asked again, with the validator; 304 keeps what is held
            content, got = await node.read_all(ask)
            assert got == b"index v1"
            second = node.origin.gets(INDEX)[1]
            assert second.headers["if-none-match"] == '"v1"'

            node.origin.put(INDEX, b"index v2")  # changes at the origin
            node.now += 1  # the window started again at the 304: still the held bytes
            _, got = await node.read_all(ask)
            assert got == b"index v1"
            node.now += WINDOW_S
            _, got = await node.read_all(ask)
            assert got == b"index v2"
        assert len(node.origin.gets(INDEX)) == 3


async def test_origin_errors_pass_through_and_nothing_is_stored(tmp_path: Path) -> None:
    async with one_node(tmp_path) as node:
        with trio.fail_after(10):
            with pytest.raises(OriginStatusError) as caught:
                await node.source.open(ContentRequest(URL, "apt"))
            assert caught.value.status == 404
            with pytest.raises(NotAllowedError):  # not on the allow-list: never reaches it
                await node.source.open(ContentRequest("http://elsewhere.example/x", "apt"))
        assert [str(r.url) for r in node.origin.requests] == [URL]
        assert node.store.lookup(URL) is None


async def test_a_front_door_over_memory_streams(tmp_path: Path) -> None:
    # The apt proxy on the service, its client on the other end of a memory stream pair.
    data = b"hello deb " * 10_000
    async with one_node(tmp_path) as node:
        node.origin.put(URL, data)
        proxy = AptProxy(AptConfig(port=0, allowed_hosts=["mirror.example"]), node.source)
        client, server = trio.testing.memory_stream_pair()
        with trio.fail_after(10):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(proxy._connection, server)  # type: ignore[arg-type]
                request = f"GET {URL} HTTP/1.1\r\nHost: mirror.example\r\nConnection: close\r\n\r\n"
                await client.send_all(request.encode())
                answer = bytearray()
                while piece := await client.receive_some(65536):
                    answer += piece
        head, _, body = bytes(answer).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        assert body == data
        assert proxy.metrics.bytes_served["uplink"] == len(data)


@pytest.mark.parametrize("files", [False, True], ids=["read", "read_files"])
async def test_a_reader_that_leaves_half_way_leaves_nothing_behind(
    tmp_path: Path, files: bool
) -> None:
    """A door whose client hangs up stops reading in the middle: the read's generators must be
    closed by the read itself. Left suspended, the garbage collector finalises them later and
    trio's ResourceWarning fails whatever runs then. Both an object still arriving (the first
    read) and a stored one (the second)."""
    data = bytes(range(256)) * 1000  # several chunks
    async with one_node(tmp_path) as node:
        node.origin.put(URL, data)
        with trio.fail_after(10):
            for provenance in ("uplink", "local"):
                content = await node.source.open(ContentRequest(URL, "apt"))
                assert content.info.provenance == provenance
                reading = content.read_files if files else content.read
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    async with reading(0, content.info.size) as pieces:
                        async for _piece in pieces:
                            break  # the client hung up after the first piece
                    del pieces
                    gc.collect()
                    await trio.testing.wait_all_tasks_blocked()
                resource = [str(w.message) for w in caught if w.category is ResourceWarning]
                assert resource == [], provenance
                await node.service.wait_idle()  # the fetch goes on without the reader
