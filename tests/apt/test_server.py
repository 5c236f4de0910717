"""The proxy over real loopback sockets, with an in-memory content source."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from frumitcache.agent import ContentService
from frumitcache.apt import AptProxy, HashBook, SiteStatus
from frumitcache.config import AptConfig, OriginConfig
from frumitcache.content import http_date
from frumitcache.errors import OriginUnreachableError
from frumitcache.origin import AllowList, OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

from ._fakes import MemorySource, exchange, read_all, read_reply

Addr = tuple[str, int]
DEB_URL = "http://deb.debian.org/debian/pool/main/h/hello/hello_1_all.deb"
DEB = bytes(range(256)) * 20


def config(**kw: object) -> AptConfig:
    base: dict[str, object] = {"port": 0, "listen": loopback_address()}
    base.update(kw)
    return AptConfig(**base)  # type: ignore[arg-type]


@pytest.fixture
def source() -> MemorySource:
    s = MemorySource()
    s.add(DEB_URL, DEB)
    return s


@pytest.fixture
async def proxy(nursery: trio.Nursery, source: MemorySource, tmp_path: Path) -> AptProxy:
    p = AptProxy(
        config(header_timeout_s=0.5, idle_timeout_s=2.0, max_header_bytes=4096),
        source,
        hashes=HashBook(tmp_path / "h.sqlite"),
        status=lambda: SiteStatus(site="lab", node="pi-1", seeder="pi-7", members=("pi-1", "pi-7")),
    )
    p.bound = await nursery.start(p.serve)  # type: ignore[attr-defined]
    return p


def addr(p: AptProxy) -> Addr:
    return p.bound  # type: ignore[attr-defined, no-any-return]


def get(target: str, *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: proxy", *headers, "", ""]
    return "\r\n".join(lines).encode()


async def test_absolute_form_get(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(addr(proxy), get(DEB_URL))
    assert r.status == 200
    assert r.body == DEB
    assert r.headers["content-length"] == str(len(DEB))
    assert r.headers["last-modified"] == http_date(1_700_000_000.0)
    assert r.headers["accept-ranges"] == "bytes"


async def test_url_prefix_form_and_miss_then_hit(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r1 = await exchange(
            addr(proxy), get("/deb.debian.org/debian/pool/main/h/hello/hello_1_all.deb")
        )
        r2 = await exchange(addr(proxy), get(DEB_URL))
    assert r1.body == DEB
    assert r2.body == DEB
    assert (proxy.metrics.misses, proxy.metrics.hits) == (1, 1)
    assert proxy.metrics.bytes_served["uplink"] == len(DEB)
    assert proxy.metrics.bytes_served["local"] == len(DEB)


async def test_keep_alive_pipelining(proxy: AptProxy, source: MemorySource) -> None:
    urls = [f"http://deb.debian.org/debian/pool/f{i}.deb" for i in range(5)]
    for i, u in enumerate(urls):
        source.add(u, bytes([i]) * (3000 + i))
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(*addr(proxy))
        async with stream:
            # All requests in one write, as apt pipelines them; a HEAD in the middle.
            raw = (
                b"".join(get(u) for u in urls[:2])
                + get(urls[2], method="HEAD")
                + b"".join(get(u) for u in urls[3:])
            )
            await stream.send_all(raw)
            buf = bytearray()
            replies = [await read_reply(stream, buf, head=(i == 2)) for i in range(5)]
    for i, r in enumerate(replies):
        assert r.status == 200
        assert r.headers["content-length"] == str(3000 + i)
        assert r.body == (b"" if i == 2 else bytes([i]) * (3000 + i))


async def test_range_and_if_range(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(addr(proxy), get(DEB_URL, "Range: bytes=100-"))
        assert r.status == 206
        assert r.body == DEB[100:]
        assert r.headers["content-range"] == f"bytes 100-{len(DEB) - 1}/{len(DEB)}"
        assert r.headers["content-length"] == str(len(DEB) - 100)
        stale = http_date(1_600_000_000.0)
        r = await exchange(addr(proxy), get(DEB_URL, "Range: bytes=100-", f"If-Range: {stale}"))
        assert r.status == 200
        assert r.body == DEB
        r = await exchange(addr(proxy), get(DEB_URL, f"Range: bytes={len(DEB)}-"))
        assert r.status == 416
        assert r.headers["content-range"] == f"bytes */{len(DEB)}"


async def test_if_modified_since(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(
            addr(proxy), get(DEB_URL, f"If-Modified-Since: {http_date(1_700_000_000.0)}")
        )
        assert r.status == 304
        assert r.body == b""
        r = await exchange(
            addr(proxy), get(DEB_URL, f"If-Modified-Since: {http_date(1_600_000_000.0)}")
        )
        assert r.status == 200
        assert r.body == DEB


async def test_head(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(addr(proxy), get(DEB_URL, method="HEAD"), head=True)
    assert r.status == 200
    assert r.headers["content-length"] == str(len(DEB))
    assert r.body == b""


async def test_honest_errors(proxy: AptProxy, source: MemorySource) -> None:
    gone = "http://deb.debian.org/debian/pool/gone.deb"
    down = "http://deb.debian.org/debian/pool/down.deb"
    source.errors[down] = OriginUnreachableError("connection refused")
    with trio.fail_after(5):
        r = await exchange(addr(proxy), get(gone))
        assert r.status == 404
        assert b"404" in r.body
        r = await exchange(addr(proxy), get(down))
        assert r.status == 504
        assert b"unreachable" in r.body


async def test_not_allowed_and_traversal(proxy: AptProxy, source: MemorySource) -> None:
    with trio.fail_after(5):
        r = await exchange(addr(proxy), get("http://evil.example/debian/pool/x.deb"))
        assert r.status == 403
        assert b"apt.allowed_hosts" in r.body
        r = await exchange(addr(proxy), get("/deb.debian.org/debian/%2e%2e/%2e%2e/etc/passwd"))
        assert r.status == 400
    assert source.calls == []  # nothing refused ever reached the source


async def test_status_page_is_what_auto_apt_proxy_detects(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(addr(proxy), b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n")
    assert r.status == 406
    assert r.reason == b"Usage Information"
    text = r.body.decode()
    assert "Apt-Cacher" in text
    for word in ("lab", "pi-7", "Hit ratio", "spared"):
        assert word in text


async def test_metrics(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        await exchange(addr(proxy), get(DEB_URL))
        r = await exchange(addr(proxy), get("/metrics"))
    assert r.status == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.body.decode()
    assert 'frumitcache_apt_requests_total{method="GET",status="200"} 1' in text
    assert f'frumitcache_apt_bytes_served_total{{source="uplink"}} {len(DEB)}' in text
    assert "frumitcache_apt_cache_misses_total 1" in text


@dataclass
class RealNode:
    """The proxy over the product's own source: store, origin fetcher, content service, and a
    test origin on loopback. Digest mismatches here are raised by the fetcher, not a fake."""

    origin: OriginServer
    authority: str
    store: Store
    proxy: AptProxy

    def url(self, path: str) -> str:
        return f"http://{self.authority}{path}"


@asynccontextmanager
async def real_node(
    tmp_path: Path, book: HashBook, origin: OriginServer | None = None, at: Addr | None = None
) -> AsyncIterator[RealNode]:
    """``origin`` served at ``at`` (address, port) if given, else a new one anywhere."""
    origin = origin or OriginServer()
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=16 * 1024)
    fetcher = OriginFetcher(
        OriginConfig(
            connect_timeout_s=2, read_timeout_s=5, retries=0, allow=["127.0.0.0/8:*", "[::1]:*"]
        ),
        store,
    )
    try:
        async with trio.open_nursery() as nursery:
            address, port = at or (loopback_address(), 0)
            port = await nursery.start(origin.serve, address, port)
            authority = f"{address}:{port}"
            content = ContentService(store, fetcher, nursery, index_window_s=30.0)
            proxy = AptProxy(config(allowed_hosts=[authority]), content.source, hashes=book)
            proxy.bound = await nursery.start(proxy.serve)  # type: ignore[attr-defined]
            yield RealNode(origin, authority, store, proxy)
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        store.close()


PACKAGES_PATH = "/debian/dists/stable/main/binary-all/Packages"
HELLO_PATH = "/debian/pool/main/h/hello/hello_1_all.deb"


async def test_deb_checked_against_learned_packages(tmp_path: Path) -> None:
    good = hashlib.sha256(DEB).hexdigest()
    bad_path = "/debian/pool/main/b/bad/bad_1_all.deb"
    packages = (
        f"Package: hello\nFilename: pool/main/h/hello/hello_1_all.deb\nSize: {len(DEB)}\n"
        f"SHA256: {good}\n\nPackage: bad\nFilename: pool/main/b/bad/bad_1_all.deb\nSize: 800\n"
        f"SHA256: {hashlib.sha256(b'the real bad_1').hexdigest()}\n"
    ).encode()
    book = HashBook(tmp_path / "h.sqlite")
    async with real_node(tmp_path, book) as node:
        node.origin.add(PACKAGES_PATH, packages)
        node.origin.add(HELLO_PATH, DEB)
        node.origin.add(bad_path, b"tampered" * 100)  # 800 bytes, not what Packages lists
        with trio.fail_after(10):
            r = await exchange(addr(node.proxy), get(node.url(PACKAGES_PATH)))
            assert r.status == 200
            r = await exchange(addr(node.proxy), get(node.url(HELLO_PATH)))
            assert r.status == 200
            assert r.body == DEB
            r = await exchange(addr(node.proxy), get(node.url(bad_path)))
            assert r.status == 502
            assert b"SHA-256" in r.body
        assert node.proxy.metrics.digest_mismatches == 1
        assert node.store.lookup(node.url(bad_path)) is None  # refused: not cached either
        assert node.store.lookup(node.url(HELLO_PATH)) is not None
    book.close()


async def test_mismatch_after_headers_breaks_the_transfer(tmp_path: Path) -> None:
    big = bytes(range(256)) * 1000  # 256 KB: 16 store chunks, headers go out with the first
    book = HashBook(tmp_path / "h.sqlite")
    async with real_node(tmp_path, book) as node:
        node.origin.add("/debian/pool/big.deb", big)
        book.record([(node.url("/debian/pool/big.deb"), len(big), "1" * 64)])
        with trio.fail_after(10):
            stream = await trio.open_tcp_stream(*addr(node.proxy))
            async with stream:
                await stream.send_all(get(node.url("/debian/pool/big.deb")))
                raw = await read_all(stream)
        head, _, body = raw.partition(b"\r\n\r\n")
        assert b"200" in head.split(b"\r\n")[0]
        assert len(body) < len(big)  # never the whole (bad) file
        assert node.proxy.metrics.digest_mismatches == 1
        assert node.store.lookup(node.url("/debian/pool/big.deb")) is None
    book.close()


async def test_malformed_request_line(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        for raw in (
            b"GARBAGE\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n",
            b"\x00\x01\x02 / HTTP/1.1\r\n\r\n",
        ):
            stream = await trio.open_tcp_stream(*addr(proxy))
            async with stream:
                await stream.send_all(raw)
                reply = await read_all(stream)
            assert reply.startswith((b"HTTP/1.1 400", b"HTTP/1.1 505")), reply


async def test_huge_headers(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(*addr(proxy))
        async with stream:
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(get(DEB_URL, "X-Big: " + "a" * 10000))
            reply = await read_all(stream)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]


async def test_slow_loris_is_cut_off(source: MemorySource, autojump_clock: MockClock) -> None:
    """One byte every 0.1 s never finishes a head: cut off at header_timeout_s (virtual time)."""
    p = AptProxy(config(header_timeout_s=0.5, idle_timeout_s=2.0), source)
    client, server = trio.testing.memory_stream_pair()
    closed_at: list[float] = []
    async with trio.open_nursery() as nursery:
        # A memory stream stands in for the socket: the head is never complete, no body is sent.
        nursery.start_soon(p._connection, server)  # type: ignore[arg-type]
        start = trio.current_time()
        await client.send_all(b"GET " + DEB_URL.encode())
        with trio.fail_after(30):
            for _ in range(40):  # would take 4 s to send
                try:
                    await client.send_all(b"x")
                except trio.BrokenResourceError:
                    closed_at.append(trio.current_time())
                    break
                with trio.move_on_after(0.1):
                    await client.receive_some(65536)  # b"" or a 408 once the proxy gave up
                    closed_at.append(trio.current_time())
                    break
    assert closed_at, "the proxy never cut the slow client off"
    assert 0.5 <= closed_at[0] - start <= 0.7  # header_timeout_s, not the 2 s idle timeout


async def test_idle_keep_alive_closed(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(*addr(proxy))
        async with stream:
            assert await stream.receive_some(100) == b""  # after idle_timeout_s (2 s)


async def test_connect_not_allowed(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(
            addr(proxy), b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n"
        )
    assert r.status == 403
    assert b"apt.connect_allowed_hosts" in r.body


async def test_connect_tunnel(nursery: trio.Nursery, source: MemorySource, tmp_path: Path) -> None:
    upstream = loopback_address()

    async def echo(stream: trio.SocketStream) -> None:
        async with stream:
            while data := await stream.receive_some(1000):
                await stream.send_all(data.upper())

    listeners = await trio.open_tcp_listeners(0, host=upstream)
    port = listeners[0].socket.getsockname()[1]
    nursery.start_soon(trio.serve_listeners, echo, listeners)
    store = Store.open(tmp_path / "store", max_bytes=1 << 20, chunk_size=64 * 1024)
    fetcher = OriginFetcher(OriginConfig(), store)
    allowed = [f"{upstream}:{port}"]
    opener = fetcher.tunnel_opener(AllowList.parse(allowed, "apt.connect_allowed_hosts"))
    p = AptProxy(config(connect_allowed_hosts=allowed), source, tunnels=opener)
    bound = await nursery.start(p.serve)
    try:
        with trio.fail_after(5):
            stream = await trio.open_tcp_stream(*bound)
            async with stream:
                await stream.send_all(
                    f"CONNECT {upstream}:{port} HTTP/1.1\r\nHost: x\r\n\r\nhello".encode()
                )
                buf = bytearray()
                while b"HELLO" not in buf:
                    buf += await stream.receive_some(1000)
                assert buf.startswith(b"HTTP/1.1 200")
                await stream.send_all(b" world")
                got = b""
                while b"WORLD" not in got:
                    got += await stream.receive_some(1000)
    finally:
        await fetcher.aclose()
        store.close()
    assert p.metrics.connect_tunnels == 1
    assert p.metrics.connect_bytes >= 2 * len("hello world")
    assert p.metrics.bytes_served["uplink"] >= len("HELLO WORLD")
    # The uplink client carried them: its counters are the agent's uplink figures.
    stats = fetcher.statistics()
    assert stats.tunnels == 1
    assert stats.bytes_by_host[f"{upstream}:{port}"] == len("HELLO WORLD")
    assert stats.bytes_sent == len("hello world")


async def test_connect_without_an_opener_is_refused(
    source: MemorySource, nursery: trio.Nursery
) -> None:
    p = AptProxy(config(connect_allowed_hosts=["127.0.0.1:9"]), source)
    bound = await nursery.start(p.serve)
    with trio.fail_after(5):
        r = await exchange(bound, b"CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.status == 403
    assert b"no tunnels" in r.body


async def test_other_methods(proxy: AptProxy) -> None:
    with trio.fail_after(5):
        r = await exchange(
            addr(proxy),
            b"POST " + DEB_URL.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        )
    assert r.status == 405


async def test_https_remapping_reaches_the_source_as_https(
    proxy: AptProxy, source: MemorySource
) -> None:
    url = "https://deb.debian.org/debian/pool/main/h/hello/hello_1_all.deb"
    source.add(url, DEB)
    with trio.fail_after(5):
        r1 = await exchange(addr(proxy), get("http://HTTPS///deb.debian.org" + url[22:]))
        r2 = await exchange(addr(proxy), get("/HTTPS///deb.debian.org" + url[22:]))
    assert r1.status == 200
    assert r2.body == DEB
    assert [c.url for c in source.calls] == [url, url]


async def test_huge_head_dribbled_in_pieces(proxy: AptProxy) -> None:
    """h11's own bound on an incomplete head (max_incomplete_event_size)."""
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream(*addr(proxy))
        async with stream:
            try:
                await stream.send_all(b"GET " + DEB_URL.encode() + b" HTTP/1.1\r\nX: ")
                for _ in range(10):
                    await stream.send_all(b"a" * 1000)
            except trio.BrokenResourceError:
                pass
            reply = await read_all(stream)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:100]


def test_public_surface() -> None:
    import frumitcache.apt as apt

    assert sorted(apt.__all__) == sorted(
        [
            "AptProxy",
            "Expected",
            "FileKind",
            "HashBook",
            "IndexEntry",
            "ProxyMetrics",
            "Rejection",
            "SiteStatus",
            "Target",
            "classify",
            "parse_packages",
            "parse_release",
            "parse_target",
        ]
    )
    for name in apt.__all__:
        assert getattr(apt, name) is not None


async def test_learned_hashes_survive_a_restart(tmp_path: Path) -> None:
    book_path = tmp_path / "restart.sqlite"
    first_book = HashBook(book_path)
    origin = OriginServer()
    async with real_node(tmp_path / "first", first_book, origin) as node:
        at = (origin.address, origin.port)
        node.origin.add(
            PACKAGES_PATH,
            f"Package: hello\nFilename: pool/main/h/hello/hello_1_all.deb\nSize: {len(DEB)}\n"
            f"SHA256: {'0' * 64}\n".encode(),
        )
        with trio.fail_after(10):
            assert (await exchange(addr(node.proxy), get(node.url(PACKAGES_PATH)))).status == 200
            await node.proxy._learner.wait_idle()
    first_book.close()
    # A new proxy (new store) on the same table: the .deb is checked without Packages being
    # served again, and the fetcher refuses the bytes that do not match it.
    second_book = HashBook(book_path)
    async with real_node(tmp_path / "second", second_book, origin, at) as node:
        node.origin.add(HELLO_PATH, DEB)
        with trio.fail_after(10):
            r = await exchange(addr(node.proxy), get(node.url(HELLO_PATH)))
        assert r.status == 502
        assert b"SHA-256" in r.body
        assert node.proxy.metrics.digest_mismatches == 1
    second_book.close()
