"""A fenced seeder's unfinished chunk on the peer port (agent/_tail.py): packed under the
site key, served only on a signed request, refused when anything about it is off; and where
it may follow a new seeder's writer."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import msgpack
import pytest
import trio

from frumitcache.agent._peerapi import PrefetchPeerHttpServer, request_tail
from frumitcache.agent._tail import Tail, key_of, pack_tail, tail_fits, tail_path, unpack_tail
from frumitcache.errors import PeerError
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from tests.library.test_peerapi import raw_post

KEY = b"k" * 32
CHUNK = 1 << 20
URL = "http://origin/big.bin?x=1"
DIGEST = hashlib.sha256(b"the object").digest()
TAIL = Tail(2 * CHUNK, DIGEST, b"\x5a" * 1000)


def test_a_packed_tail_unpacks_under_the_same_key_and_name() -> None:
    body = pack_tail(KEY, URL, TAIL)
    assert unpack_tail(KEY, URL, body, chunk_size=CHUNK) == TAIL
    assert key_of(tail_path(URL)) == URL


@pytest.mark.parametrize(
    ("case", "key", "name", "body"),
    [
        ("another site's key", b"w" * 32, URL, pack_tail(KEY, URL, TAIL)),
        ("another object's tail", KEY, URL + "2", pack_tail(KEY, URL, TAIL)),
        ("bytes changed", KEY, URL, pack_tail(KEY, URL, TAIL).replace(b"\x5a" * 8, b"\x5b" * 8)),
        ("not msgpack", KEY, URL, b"\xc1garbage"),
        ("not a list", KEY, URL, msgpack.packb({"at": 0})),
        ("at off a chunk boundary", KEY, URL, pack_tail(KEY, URL, Tail(5, None, b"x"))),
        ("a whole chunk", KEY, URL, pack_tail(KEY, URL, Tail(0, None, b"x" * CHUNK))),
        ("empty", KEY, URL, pack_tail(KEY, URL, Tail(0, None, b""))),
        ("a short digest", KEY, URL, msgpack.packb([0, b"d", b"x", b"m" * 32])),
    ],
)
def test_a_tail_answer_that_is_off_is_refused(
    case: str, key: bytes, name: str, body: bytes
) -> None:
    with pytest.raises(PeerError):
        unpack_tail(key, name, body, chunk_size=CHUNK)


@pytest.mark.parametrize(
    ("case", "stored", "expected", "size", "fits"),
    [
        ("right after the whole chunks", 2 * CHUNK, DIGEST, None, True),
        ("the writer names no digest", 2 * CHUNK, None, 3 * CHUNK, True),
        ("the writer holds more chunks", 3 * CHUNK, DIGEST, None, False),
        ("the writer holds fewer", CHUNK, DIGEST, None, False),
        ("written for another object", 2 * CHUNK, b"\x01" * 32, None, False),
        ("past the object's end", 2 * CHUNK, None, 2 * CHUNK + 999, False),
    ],
)
def test_where_a_tail_may_follow_a_writer(
    case: str, stored: int, expected: bytes | None, size: int | None, fits: bool
) -> None:
    assert tail_fits(TAIL, stored=stored, expected=expected, size=size) is fits


@pytest.fixture
async def port(tmp_path: Path, nursery: trio.Nursery) -> AsyncIterator[tuple[str, int]]:
    asked: dict[str, int] = {}

    def tail(name: str) -> bytes | str | None:
        asked[name] = asked.get(name, 0) + 1
        if name == URL:
            return pack_tail(KEY, name, TAIL)
        if name.endswith("/unwinding") and asked[name] < 3:
            return "writing"  # a fenced fetch still unwinding: the tail comes after
        if name.endswith("/unwinding"):
            return pack_tail(KEY, name, TAIL)
        if name.endswith("/writing"):
            return "writing"
        if name.endswith("/forged"):
            return pack_tail(b"w" * 32, name, TAIL)
        return None

    with Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK) as store:
        http = PrefetchPeerHttpServer(
            store, KEY, prefetch=lambda u, s: "present", keys=lambda d: [], tail=tail
        )
        address = loopback_address()
        yield address, await nursery.start(http.serve, address, 0)
        nursery.cancel_scope.cancel()


async def test_the_tail_is_served_on_a_signed_request_only(port: tuple[str, int]) -> None:
    with trio.fail_after(10):
        assert await request_tail(port, KEY, URL, chunk_size=CHUNK) == TAIL
        assert await request_tail(port, KEY, "http://origin/other", chunk_size=CHUNK) is None
        unwinding = "http://origin/unwinding"
        assert await request_tail(port, KEY, unwinding, chunk_size=CHUNK) == TAIL
        # A writer that never leaves a tail: asked a bounded number of times, then none.
        assert await request_tail(port, KEY, "http://origin/writing", chunk_size=CHUNK) is None
        with pytest.raises(PeerError, match="not signed with the site key"):
            await request_tail(port, KEY, "http://origin/forged", chunk_size=CHUNK)
        with pytest.raises(PeerError, match="403"):
            await request_tail(port, b"w" * 32, URL, chunk_size=CHUNK)
        assert (await raw_post(port, tail_path(URL), None)).startswith(b"HTTP/1.1 403")
        # A chunk size smaller than the tail: the answer is too long to take.
        with pytest.raises(PeerError):
            await request_tail(port, KEY, URL, chunk_size=512)


async def test_the_store_lists_a_kept_tail_until_a_writer_changes_it(tmp_path: Path) -> None:
    with Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK) as store:
        assert store.kept_tail(URL) is None
        w = store.open_writer(URL)
        await w.write(b"a" * (CHUNK + 100))
        await w.abort()
        assert store.kept_tail(URL) == (CHUNK, None, b"a" * 100)
        # A writer takes it back and stops unchanged (a member path, a held fetch): listed.
        w = store.open_writer(URL)
        assert w.offset == CHUNK + 100
        assert store.kept_tail(URL) == (CHUNK, None, b"a" * 100)
        await w.abort()
        assert store.kept_tail(URL) == (CHUNK, None, b"a" * 100)
        # One that writes on: the listed tail goes; its abort keeps the longer one.
        w = store.open_writer(URL)
        await w.write(b"b" * 10)
        assert store.kept_tail(URL) is None
        await w.abort()
        assert store.kept_tail(URL) == (CHUNK, None, b"a" * 100 + b"b" * 10)
        # A whole chunk in its place: gone.
        w = store.open_writer(URL)
        digest = hashlib.sha256(b"c" * CHUNK).digest()
        await store.put_chunk(b"c" * CHUNK, digest)
        await w.add_chunk(digest)
        assert store.kept_tail(URL) is None
        await w.abort()
        assert store.kept_tail(URL) is None
