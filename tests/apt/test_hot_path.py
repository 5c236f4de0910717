"""The hot path's memos (store reads, learned hashes, resolved targets) through a real proxy,
store and test origin: what they remember never outlives a change."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from frumitcache.agent import ContentService
from frumitcache.apt import AptProxy, HashBook
from frumitcache.apt._requests import Rejection, Target, parse_target
from frumitcache.config import AptConfig, OriginConfig
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

from ._fakes import exchange

WINDOW_S = 30.0
PACKAGES_PATH = "/debian/dists/stable/main/binary-all/Packages"
DEB_PATH = "/debian/pool/main/h/hello/hello_1_all.deb"
DEB = bytes(range(256)) * 300


@dataclass
class Node:
    origin: OriginServer
    authority: str
    store: Store
    book: HashBook
    proxy: AptProxy
    bound: tuple[str, int]
    clock_offset: float = 0.0

    def url(self, path: str) -> str:
        return f"http://{self.authority}{path}"

    def clock(self) -> float:
        return trio.current_time() + self.clock_offset

    async def get(self, path: str) -> Any:
        raw = f"GET {self.url(path)} HTTP/1.1\r\nHost: proxy\r\n\r\n".encode()
        return await exchange(self.bound, raw)


@asynccontextmanager
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    origin = OriginServer()
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=16 * 1024)
    book = HashBook(tmp_path / "h.sqlite")
    fetcher = OriginFetcher(
        OriginConfig(connect_timeout_s=2, read_timeout_s=5, retries=0, allow=["127.0.0.0/8:*"]),
        store,
    )
    try:
        async with trio.open_nursery() as nursery:
            address = loopback_address()
            port = await nursery.start(origin.serve, address, 0)
            authority = f"{address}:{port}"
            holder: list[Node] = []
            content = ContentService(
                store, fetcher, nursery, index_window_s=WINDOW_S, clock=lambda: holder[0].clock()
            )
            config = AptConfig(
                port=0,
                listen=loopback_address(),
                allowed_hosts=[authority],
                index_window_s=WINDOW_S,
            )
            proxy = AptProxy(config, content.source, hashes=book)
            bound = await nursery.start(proxy.serve)
            holder.append(Node(origin, authority, store, book, proxy, bound))
            yield holder[0]
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        store.close()
        book.close()


def packages(deb: bytes) -> bytes:
    return (
        f"Package: hello\nFilename: pool/main/h/hello/hello_1_all.deb\nSize: {len(deb)}\n"
        f"SHA256: {hashlib.sha256(deb).hexdigest()}\n"
    ).encode()


async def test_an_index_revalidated_with_a_change_is_served_new(tmp_path: Path) -> None:
    async with node(tmp_path) as n:
        old, new = packages(DEB), packages(DEB[:-1]) + b"\n"
        n.origin.add(PACKAGES_PATH, old)
        with trio.fail_after(10):
            first = await n.get(PACKAGES_PATH)
            again = await n.get(PACKAGES_PATH)  # from the store (and its memo)
            assert first.body == again.body == old
            assert first.headers["etag"] == again.headers["etag"]
            assert n.origin.stats.requests[PACKAGES_PATH] == 1
            await trio.sleep(1.1)  # a later Last-Modified second
            n.origin.add(PACKAGES_PATH, new)
            n.clock_offset += WINDOW_S + 1  # due: revalidated with the origin, which changed
            changed = await n.get(PACKAGES_PATH)
            assert changed.body == new
            assert changed.headers["content-length"] == str(len(new))
            assert changed.headers["etag"] != first.headers["etag"]
            assert changed.headers["last-modified"] != first.headers["last-modified"]
            after = await n.get(PACKAGES_PATH)  # within the new window: the new copy, held
            assert after.body == new
            assert after.headers["etag"] == changed.headers["etag"]
            assert n.origin.stats.requests[PACKAGES_PATH] == 2
            await n.proxy._learner.wait_idle()
        # The hashes learned from the new index replaced the old ones.
        learned = n.book.lookup(n.url(DEB_PATH))
        assert learned is not None
        assert learned.size == len(DEB) - 1


class _CountingDb:
    """A sqlite connection that counts the statements run on it."""

    def __init__(self, db: Any) -> None:
        self._db = db
        self.statements = 0

    def execute(self, *args: Any) -> Any:
        self.statements += 1
        return self._db.execute(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


async def test_hot_requests_read_no_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a .deb and its Packages were served, serving the .deb again asks neither the
    store's index nor the learned hashes' table anything."""
    async with node(tmp_path) as n:
        n.origin.add(PACKAGES_PATH, packages(DEB))
        n.origin.add(DEB_PATH, DEB)
        with trio.fail_after(10):
            assert (await n.get(PACKAGES_PATH)).status == 200
            await n.proxy._learner.wait_idle()
            assert (await n.get(DEB_PATH)).body == DEB
            assert (await n.get(DEB_PATH)).body == DEB
            index_reads = [0]
            real_read = n.store._core.index.read

            def read() -> Any:
                index_reads[0] += 1
                return real_read()

            monkeypatch.setattr(n.store._core.index, "read", read)
            db = _CountingDb(n.book._db)
            monkeypatch.setattr(n.book, "_db", db)
            for _ in range(3):
                reply = await n.get(DEB_PATH)
                assert reply.status == 200
                assert reply.body == DEB
            monkeypatch.undo()
        assert index_reads[0] == 0
        assert db.statements == 0
        assert n.origin.stats.requests[DEB_PATH] == 1


def test_hash_book_memo_follows_what_is_learned(tmp_path: Path) -> None:
    book = HashBook(tmp_path / "h.sqlite", max_rows=2)
    try:
        assert book.lookup("http://o/a.deb") is None
        book.record([("http://o/a.deb", 1, "a" * 64)])
        found = book.lookup("http://o/a.deb")  # the remembered absence is gone
        assert found is not None
        assert found.sha256 == "a" * 64
        book.record([("http://o/a.deb", 2, "b" * 64)])  # a newer index says otherwise
        found = book.lookup("http://o/a.deb")
        assert found is not None
        assert (found.size, found.sha256) == (2, "b" * 64)
        book.record([("http://o/b.deb", 3, "c" * 64), ("http://o/c.deb", 4, "d" * 64)])
        assert book.lookup("http://o/a.deb") is None  # pruned: learned longest ago
    finally:
        book.close()


def test_a_remembered_target_is_still_checked_against_the_allow_list() -> None:
    raw = b"http://deb.example.org/debian/pool/main/h/hello/hello_1_all.deb"
    allowed = parse_target(raw, ["deb.example.org"])
    assert isinstance(allowed, Target)
    refused = parse_target(raw, ["other.example.org"])
    assert isinstance(refused, Rejection)
    assert refused.status == 403
    assert "deb.example.org" in refused.reason
    assert parse_target(raw, ["deb.example.org"]) == allowed
    bad = parse_target(b"/deb.example.org/debian/../etc/passwd", ["deb.example.org"])
    assert isinstance(bad, Rejection)
    assert bad.status == 400
