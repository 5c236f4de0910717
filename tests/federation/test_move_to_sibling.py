"""A parent's stream taken over by a sibling (``federation.sibling_recheck_s``), over
in-memory transports: the fetcher's Range resume is handed the sibling's answer from the byte
the parent reached; a sibling whose answer is not the rest of the same object is left alone."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
import trio

from frumitcache.config import FederationConfig, OriginConfig
from frumitcache.federation import FederationTransport
from frumitcache.origin import FRESHNESS_EXTENSION, VIA_EXTENSION, OriginFetcher
from frumitcache.store import Store

KEY = "ab" * 32
URL = "http://origin.example/pool/a.deb"
CHUNK = 4096
DATA = bytes(range(256)) * (16 * CHUNK // 256)  # 64 KiB: sixteen chunks
PARENT, SIBLING = "10.0.0.1", "10.0.1.1"


class _Trickle(httpx.AsyncByteStream):
    """``data`` in 4 KiB parts, 10 ms apart: a slow parent."""

    def __init__(self, data: bytes) -> None:
        self._parts = self._trickle(data)

    @staticmethod
    async def _trickle(data: bytes) -> AsyncIterator[bytes]:
        for at in range(0, len(data), CHUNK):
            await trio.sleep(0.01)
            yield data[at : at + CHUNK]

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._parts

    async def aclose(self) -> None:
        await self._parts.aclose()  # type: ignore[attr-defined]


Answer = Callable[[httpx.Request, int], httpx.Response]


def _serve(data: bytes, request: httpx.Request, trickle: bool) -> httpx.Response:
    spec = request.headers.get("range", "")
    start = int(spec[6:-1]) if spec.startswith("bytes=") and spec.endswith("-") else 0
    body = data[start:]
    stream = _Trickle(body) if trickle else httpx.ByteStream(body)
    if not start:
        return httpx.Response(200, headers={"content-length": str(len(data))}, stream=stream)
    extra = {"content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
    return httpx.Response(206, headers=extra, stream=stream)


def _members(
    sibling: Answer, to_sibling: list[httpx.Request]
) -> Callable[[httpx.Request], httpx.Response]:
    """The members' network: the sibling answers as ``sibling`` (given the request and how
    many times it was asked; each ask recorded), the parent serves DATA slowly."""

    def members(request: httpx.Request) -> httpx.Response:
        if request.url.host == SIBLING:
            to_sibling.append(request)
            return sibling(request, len(to_sibling))
        return _serve(DATA, request, trickle=True)

    return members


async def _fetch(
    tmp_path: Path, sibling: Answer, **config: object
) -> tuple[bytes, dict[str, int], list[httpx.Request], list[httpx.Request]]:
    """Fetch DATA (its SHA-256 known) with one sibling answering as ``sibling`` (given the
    request and how many times it was asked) and a slow honest parent: the stored digest,
    bytes per link, what the sibling and the origin were asked."""
    to_sibling: list[httpx.Request] = []
    to_origin: list[httpx.Request] = []
    members = _members(sibling, to_sibling)

    def origin(request: httpx.Request) -> httpx.Response:
        to_origin.append(request)
        return _serve(DATA, request, trickle=False)

    cfg = FederationConfig(
        key=KEY,
        parents=[PARENT],
        siblings=[SIBLING],
        **{"sibling_recheck_s": 0.05, **config},  # type: ignore[arg-type]
    )
    with Store.open(tmp_path / "store", max_bytes=1 << 22, chunk_size=CHUNK) as store:
        fetcher = OriginFetcher(
            OriginConfig(retries=3, allow=["origin.example"]),
            store,
            transport=httpx.MockTransport(origin),
            wrap=lambda t: FederationTransport(
                t, config=cfg, key=KEY.encode(), links=httpx.MockTransport(members)
            ),
        )
        async with fetcher:
            with trio.fail_after(10):
                manifest = await fetcher.fetch(URL, expected_digest=hashlib.sha256(DATA).digest())
        stats = fetcher.statistics()
    return manifest.digest, dict(stats.federation_by_link), to_sibling, to_origin


BUSY = httpx.Response(503, headers={"x-frumit-busy": "siblings", "retry-after": "1"})


async def test_a_sibling_free_later_takes_the_rest_from_where_the_parent_was(
    tmp_path: Path,
) -> None:
    """The sibling is busy when the fetch begins and at the first walk; at the second it
    answers the rest of the object from the byte the parent reached. The fetcher's resume
    takes that answer (no third request to the sibling), the parent's stream ends, and every
    byte is stored once: parent + sibling = the object."""

    def sibling(request: httpx.Request, asked: int) -> httpx.Response:
        return BUSY if asked <= 2 else _serve(DATA, request, trickle=False)

    digest, by_link, asked, origin = await _fetch(tmp_path, sibling)
    assert digest == hashlib.sha256(DATA).digest()
    assert len(asked) == 3, [r.headers.get("range") for r in asked]
    assert "range" not in asked[0].headers  # the fetch's first walk
    offset = int(asked[2].headers["range"][6:-1])
    assert 0 < offset < len(DATA)
    assert asked[2].headers["cache-control"] == "only-if-cached"
    assert by_link == {"parent@10.0.0.1:3147": offset, "sibling@10.0.1.1:3147": len(DATA) - offset}
    assert origin == []


def _wrong_start(request: httpx.Request, asked: int) -> httpx.Response:
    """Answers 206 one byte before what was asked."""
    start = int(request.headers["range"][6:-1]) - 1 if "range" in request.headers else 0
    if not start:
        return BUSY
    extra = {"content-range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"}
    return httpx.Response(206, headers=extra, stream=httpx.ByteStream(DATA[start:]))


def _other_size(request: httpx.Request, asked: int) -> httpx.Response:
    """Holds a longer object under the same URL."""
    return _serve(DATA + b"more", request, trickle=False) if "range" in request.headers else BUSY


def _whole(request: httpx.Request, asked: int) -> httpx.Response:
    """Ignores Range (or its If-Range did not match): the whole object, 200."""
    if "range" not in request.headers:
        return BUSY
    return _serve(DATA, httpx.Request("GET", request.url), trickle=False)


async def test_hostile_siblings_whose_answer_is_not_the_rest_are_left(tmp_path: Path) -> None:
    """Hostile: siblings answering a walk with a range that starts elsewhere, with another
    object's size, or with the whole object: none takes over, the parent's stream runs to its
    end, and the object is stored from the parent alone."""
    for answer in (_wrong_start, _other_size, _whole):
        sub = tmp_path / answer.__name__
        digest, by_link, asked, _ = await _fetch(sub, answer)
        assert digest == hashlib.sha256(DATA).digest()
        assert by_link == {"parent@10.0.0.1:3147": len(DATA)}, answer.__name__
        assert len(asked) >= 2, answer.__name__  # walked while the parent streamed


async def test_no_walk_when_rechecks_are_off(tmp_path: Path) -> None:
    """``sibling_recheck_s = 0``: the siblings are asked once, when the fetch begins."""

    def sibling(request: httpx.Request, asked: int) -> httpx.Response:
        return BUSY if asked == 1 else _serve(DATA, request, trickle=False)

    digest, by_link, asked, _ = await _fetch(tmp_path, sibling, sibling_recheck_s=0.0)
    assert digest == hashlib.sha256(DATA).digest()
    assert len(asked) == 1
    assert by_link == {"parent@10.0.0.1:3147": len(DATA)}


def _transport(sibling: Answer) -> tuple[FederationTransport, list[httpx.Request]]:
    """A transport over a slow honest parent and one sibling answering as ``sibling``."""
    to_sibling: list[httpx.Request] = []
    cfg = FederationConfig(key=KEY, parents=[PARENT], siblings=[SIBLING], sibling_recheck_s=0.05)
    never = httpx.MockTransport(lambda r: httpx.Response(599))  # the origin: not asked here
    links = httpx.MockTransport(_members(sibling, to_sibling))
    return FederationTransport(never, config=cfg, key=KEY.encode(), links=links), to_sibling


def _rest(request: httpx.Request, asked: int) -> httpx.Response:
    """Busy for the fetch's first walk, then the rest of the object from where asked."""
    return BUSY if "range" not in request.headers else _serve(DATA, request, trickle=False)


async def test_an_object_that_may_change_is_never_moved_to_a_sibling() -> None:
    """An object revalidated with its origin (an apt index) never comes from a sibling: its
    parent's stream is not offered to them, however long it runs."""
    transport, asked = _transport(_rest)
    request = httpx.Request("GET", URL, extensions={FRESHNESS_EXTENSION: "revalidate"})
    response = await transport.handle_async_request(request)
    assert response.extensions[VIA_EXTENSION] == "parent@10.0.0.1:3147"
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    assert b"".join([part async for part in stream]) == DATA
    assert asked == []


class _Watched(httpx.AsyncByteStream):
    """A sibling's body that records being closed."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.data

    async def aclose(self) -> None:
        self.closed = True


async def test_a_sibling_answer_never_claimed_is_closed(autojump_clock: object) -> None:
    """Hostile to the sibling's slot: the parent's stream ends for a sibling, but the fetch is
    gone before its resume (cancelled). The kept answer holds one of that sibling's stream
    slots: it is closed once a later request finds it older than 30 s."""
    bodies: list[_Watched] = []

    def sibling(request: httpx.Request, asked: int) -> httpx.Response:
        if "range" not in request.headers:
            return BUSY
        start = int(request.headers["range"][6:-1])
        bodies.append(_Watched(DATA[start:]))
        extra = {"content-range": f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"}
        return httpx.Response(206, headers=extra, stream=bodies[-1])

    transport, _ = _transport(sibling)
    request = httpx.Request("GET", URL, extensions={FRESHNESS_EXTENSION: "immutable"})
    response = await transport.handle_async_request(request)
    stream = response.stream
    assert isinstance(stream, httpx.AsyncByteStream)
    with pytest.raises(httpx.ReadError, match="has the rest from byte"):
        async for _ in stream:
            pass
    await stream.aclose()
    assert len(bodies) == 1
    assert not bodies[0].closed  # kept for the resume that never comes
    await trio.sleep(31)
    other = httpx.Request("GET", URL + ".other", extensions={FRESHNESS_EXTENSION: "immutable"})
    await transport.handle_async_request(other)
    assert bodies[0].closed
