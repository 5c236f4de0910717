"""The child's link logic (pure decisions over in-memory transports): which requests may be
federated, the order siblings → parents → origin, and which refusals make a member skipped."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path

import httpx
import pytest

from frumitcache.config import FederationConfig, OriginConfig
from frumitcache.errors import DigestMismatchError
from frumitcache.federation import FederationTransport, parse_target
from frumitcache.origin import (
    DIGEST_EXTENSION,
    FRESHNESS_EXTENSION,
    VIA_EXTENSION,
    OriginFetcher,
)
from frumitcache.store import Store
from frumitcache.swarm import AUTH_HEADER

KEY = "ab" * 32
URL = "http://origin.example/pool/a.deb"
BLOB = "http://registry.example/v2/team/app/blobs/sha256:" + "00" * 32


class Recorder:
    """An in-memory network: answers by host with a status (and headers) and records asks."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, str]]]) -> None:
        self.answers = answers
        self.asked: list[httpx.Request] = []

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            self.asked.append(request)
            status, headers = self.answers.get(request.url.host, (200, {}))
            if status == 0:
                raise httpx.ConnectError("refused", request=request)
            # A stream, as from a socket (content= would be read up front by httpx).
            return httpx.Response(status, headers=headers, stream=httpx.ByteStream(b"body"))

        return httpx.MockTransport(handle)


def links(recorder: Recorder, origin: Recorder, **config: object) -> FederationTransport:
    cfg = FederationConfig(
        key=KEY,
        parents=["10.0.0.1", "10.0.0.2"],
        siblings=["10.0.1.1"],
        **config,  # type: ignore[arg-type]
    )
    return FederationTransport(
        origin.transport(), config=cfg, key=KEY.encode(), links=recorder.transport()
    )


def fetch(freshness: str | None = "immutable", **headers: str) -> httpx.Request:
    ext = {} if freshness is None else {FRESHNESS_EXTENSION: freshness}
    return httpx.Request("GET", URL, headers=headers, extensions=ext)


def by_digest(freshness: str = "immutable", **headers: str) -> httpx.Request:
    """An object fetch whose SHA-256 the fetcher knows (a registry blob by digest)."""
    ext = {FRESHNESS_EXTENSION: freshness, DIGEST_EXTENSION: bytes(32)}
    return httpx.Request("GET", BLOB, headers=headers, extensions=ext)


async def test_siblings_then_parents_signed_and_named() -> None:
    net, origin = Recorder({"10.0.1.1": (504, {})}), Recorder({})
    response = await links(net, origin).handle_async_request(fetch(range="bytes=10-"))
    assert response.extensions[VIA_EXTENSION] == "parent@10.0.0.1:3147"
    assert [r.url.host for r in net.asked] == ["10.0.1.1", "10.0.0.1"]
    sibling, parent = net.asked
    assert sibling.headers["cache-control"] == "only-if-cached"
    assert "cache-control" not in parent.headers
    assert "x-frumit-in-flight" not in sibling.headers  # only a held-only ask of a parent
    assert "x-frumit-in-flight" not in parent.headers
    assert parent.headers["range"] == "bytes=10-"  # a resume travels on
    assert parse_target(parent.url.raw_path.decode()) == URL
    assert AUTH_HEADER.decode() in parent.headers
    assert origin.asked == []


@pytest.mark.parametrize(
    "request_",
    [
        fetch(None),  # not an object fetch (a registry token, a probe)
        fetch(authorization="Bearer secret"),  # credentials never cross sites
        # With credentials, a digest only helps content that cannot change.
        by_digest("revalidate", authorization="Bearer secret"),
        httpx.Request("HEAD", URL, extensions={FRESHNESS_EXTENSION: "immutable"}),
    ],
)
async def test_what_goes_to_the_origin_directly(request_: httpx.Request) -> None:
    net, origin = Recorder({}), Recorder({})
    await links(net, origin).handle_async_request(request_)
    assert net.asked == []
    assert len(origin.asked) == 1


async def test_an_object_that_may_change_skips_siblings() -> None:
    net, origin = Recorder({}), Recorder({})
    await links(net, origin).handle_async_request(fetch("revalidate"))
    assert [r.url.host for r in net.asked] == ["10.0.0.1"]
    assert net.asked[0].headers["x-frumit-freshness"] == "revalidate"


async def test_refusals_and_failures() -> None:
    """An unreachable member and one that refuses the key are skipped for a while; a refusal
    about one object (the origin's 401 through the parent) is not; all fall back in order."""
    net = Recorder(
        {
            "10.0.1.1": (0, {}),  # sibling unreachable
            "10.0.0.1": (403, {"x-frumit-federation": "refused"}),
            "10.0.0.2": (401, {}),
        }
    )
    origin = Recorder({})
    transport = links(net, origin)
    response = await transport.handle_async_request(fetch())
    assert VIA_EXTENSION not in response.extensions
    assert len(origin.asked) == 1
    net.asked.clear()
    await transport.handle_async_request(fetch())
    assert [r.url.host for r in net.asked] == ["10.0.0.2"]  # the other two are skipped
    assert transport.to_origin == 2


async def test_the_origins_404_through_a_parent_is_the_answer() -> None:
    net = Recorder({"10.0.1.1": (504, {}), "10.0.0.1": (404, {"x-frumit-origin-status": "404"})})
    origin = Recorder({})
    response = await links(net, origin).handle_async_request(fetch())
    assert response.status_code == 404
    assert origin.asked == []


class _Breaks(httpx.AsyncByteStream):
    """A body that dies after its first bytes (a crawling or dead member, as the fetcher
    sees it)."""

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        yield b"ab"
        raise httpx.ReadError("cut")


async def test_a_member_whose_body_broke_is_not_asked_again_in_that_fetch() -> None:
    """Even with no wait before a failed member is retried (retry_after_s 0), the Range
    resumes of one fetch go to the next parent, then the origin, never back to a member that
    already broke; a new fetch (no Range) asks them all again."""
    asked: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.host)
        if request.url.host == "10.0.1.1":
            return httpx.Response(504)  # the sibling holds nothing
        return httpx.Response(200, stream=_Breaks())

    origin = Recorder({})
    cfg = FederationConfig(
        key=KEY, parents=["10.0.0.1", "10.0.0.2"], siblings=["10.0.1.1"], retry_after_s=0.0
    )
    transport = FederationTransport(
        origin.transport(), config=cfg, key=KEY.encode(), links=httpx.MockTransport(handle)
    )

    async def read(request: httpx.Request) -> None:
        response = await transport.handle_async_request(request)
        with pytest.raises(httpx.ReadError):
            async for _ in response.stream:  # type: ignore[union-attr]
                pass

    await read(fetch())
    await read(fetch(range="bytes=2-"))
    response = await transport.handle_async_request(fetch(range="bytes=4-"))
    assert VIA_EXTENSION not in response.extensions  # the origin's answer
    assert asked == ["10.0.1.1", "10.0.0.1", "10.0.1.1", "10.0.0.2", "10.0.1.1"]
    assert len(origin.asked) == 1
    asked.clear()
    await read(fetch())  # a new fetch of the same URL
    assert asked == ["10.0.1.1", "10.0.0.1"]


async def test_a_credentialed_fetch_by_digest_asks_only_what_members_hold() -> None:
    """A registry blob fetched with a token: every member is asked only-if-cached (a parent
    could not fetch it without our token) and never sees the token; the first that holds it
    answers. When none does, the origin gets the request as it was, token included."""
    token = "Bearer never-leaves-the-site"
    net, origin = Recorder({"10.0.1.1": (504, {})}), Recorder({})
    response = await links(net, origin).handle_async_request(by_digest(authorization=token))
    assert response.extensions[VIA_EXTENSION] == "parent@10.0.0.1:3147"
    assert [r.url.host for r in net.asked] == ["10.0.1.1", "10.0.0.1"]
    for asked in net.asked:
        assert asked.headers["cache-control"] == "only-if-cached"
        assert "authorization" not in asked.headers
        assert token not in str(asked.url) + repr(asked.headers.raw)
        assert parse_target(asked.url.raw_path.decode()) == BLOB
    # The parent may also serve what it is fetching for itself right now; a sibling may not
    # (it would chain every site of a simultaneous release behind one site's upload).
    assert [r.headers.get("x-frumit-in-flight") for r in net.asked] == [None, "join"]
    assert origin.asked == []

    none_hold = Recorder({h: (504, {}) for h in ("10.0.1.1", "10.0.0.1", "10.0.0.2")})
    origin = Recorder({})
    await links(none_hold, origin).handle_async_request(by_digest(authorization=token))
    assert len(none_hold.asked) == 3
    assert [r.headers["authorization"] for r in origin.asked] == [token]


async def test_a_member_that_sends_other_bytes_for_a_digest_is_not_stored(
    tmp_path: Path,
) -> None:
    """Hostile: a parent answers a credentialed blob request (asked only-if-cached) with bytes
    that are not the blob. The fetcher checks them against the digest: nothing is stored under
    the URL or the digest, and the member never saw the token."""
    good = b"the real layer" * 1000
    digest = hashlib.sha256(good).digest()
    token = "Bearer never-leaves-the-site"

    class Auth:
        async def authorize(self, url: str, challenge: str | None) -> Mapping[str, str]:
            return {"Authorization": token}

    net = Recorder({})  # every member answers 200 "body"
    origin = Recorder({})
    cfg = FederationConfig(key=KEY, parents=["10.0.0.1"])
    with Store.open(tmp_path / "store", max_bytes=1 << 20, chunk_size=4096) as store:
        fetcher = OriginFetcher(
            OriginConfig(retries=0, allow=["registry.example"]),
            store,
            transport=origin.transport(),
            wrap=lambda t: FederationTransport(
                t, config=cfg, key=KEY.encode(), links=net.transport()
            ),
        )
        async with fetcher:
            with pytest.raises(DigestMismatchError):
                await fetcher.fetch(BLOB, expected_digest=digest, door="oci", auth=Auth())
        assert store.lookup(BLOB) is None
        assert store.lookup(digest) is None
    assert [r.headers["cache-control"] for r in net.asked] == ["only-if-cached"]
    assert all("authorization" not in r.headers for r in net.asked)


def _ranged(data: bytes, asked: list[httpx.Request]) -> httpx.MockTransport:
    """Serves ``data`` to every GET, honouring ``Range: bytes=N-``."""

    def handle(request: httpx.Request) -> httpx.Response:
        asked.append(request)
        spec = request.headers.get("range", "")
        if spec.startswith("bytes=") and spec.endswith("-"):
            start = int(spec[6:-1])
            extra = {"content-range": f"bytes {start}-{len(data) - 1}/{len(data)}"}
            return httpx.Response(206, headers=extra, stream=httpx.ByteStream(data[start:]))
        return httpx.Response(200, stream=httpx.ByteStream(data))

    return httpx.MockTransport(handle)


def _by_host(**hosts: httpx.MockTransport) -> httpx.MockTransport:
    async def handle(request: httpx.Request) -> httpx.Response:
        return await hosts[request.url.host.replace(".", "_")].handle_async_request(request)

    return httpx.MockTransport(handle)


CHUNK = 4096
GOOD = bytes(range(256)) * (5 * CHUNK // 256)  # five chunks
LIE_IN_CHUNK_2 = GOOD[: 2 * CHUNK] + b"x" * CHUNK + GOOD[3 * CHUNK :]


async def _fetch_with_parents(
    tmp_path: Path, parents: dict[str, bytes]
) -> tuple[bytes, dict[str, int], dict[str, int], list[object], list[httpx.Request]]:
    """Fetch GOOD (its SHA-256 known) through ``parents`` (address: the bytes each sends) and
    an honest origin: the stored digest, the fetcher's rejections and bytes per link, what
    the restart hook heard and what the origin was asked."""
    origin_asked: list[httpx.Request] = []
    nets = {host.replace(".", "_"): _ranged(data, []) for host, data in parents.items()}
    cfg = FederationConfig(key=KEY, parents=list(parents))
    heard: list[object] = []
    with Store.open(tmp_path / "store", max_bytes=1 << 22, chunk_size=CHUNK) as store:
        fetcher = OriginFetcher(
            OriginConfig(retries=2, allow=["origin.example"]),
            store,
            transport=_ranged(GOOD, origin_asked),
            wrap=lambda t: FederationTransport(
                t, config=cfg, key=KEY.encode(), links=_by_host(**nets)
            ),
        )
        async with fetcher:
            manifest = await fetcher.fetch(
                URL, expected_digest=hashlib.sha256(GOOD).digest(), restarted=heard.append
            )
        stats = fetcher.statistics()
        assert store.lookup(URL) == manifest
    return (
        manifest.digest,
        dict(stats.federation_rejected),
        dict(stats.federation_by_link),
        heard,
        origin_asked,
    )


async def test_hostile_parent_lying_about_one_chunk_is_left_for_the_next(
    tmp_path: Path,
) -> None:
    """Hostile: the first parent sends other bytes for chunk 2 of 5. Only the whole SHA-256
    can show it (the wire carries no chunk digests a child could trust): the fetch drops what
    it stored, leaves that parent and fetches the object again from the second one; the
    origin is not asked."""
    digest, rejected, by_link, heard, origin_asked = await _fetch_with_parents(
        tmp_path, {"10.0.0.1": LIE_IN_CHUNK_2, "10.0.0.2": GOOD}
    )
    assert digest == hashlib.sha256(GOOD).digest()
    assert rejected == {"parent@10.0.0.1:3147": 1}
    assert by_link == {"parent@10.0.0.1:3147": len(GOOD), "parent@10.0.0.2:3147": len(GOOD)}
    assert heard[0] is None
    assert getattr(heard[1], "via", None) == "parent@10.0.0.2:3147"
    assert origin_asked == []


async def test_hostile_parents_both_wrong_the_origin_sends_the_object(tmp_path: Path) -> None:
    """Hostile: both parents send a wrong whole object: each is left in turn, and the origin
    sends the object once, from its first byte."""
    digest, rejected, _, heard, origin_asked = await _fetch_with_parents(
        tmp_path, {"10.0.0.1": LIE_IN_CHUNK_2, "10.0.0.2": b"y" * len(GOOD)}
    )
    assert digest == hashlib.sha256(GOOD).digest()
    assert rejected == {"parent@10.0.0.1:3147": 1, "parent@10.0.0.2:3147": 1}
    assert [r.headers.get("range") for r in origin_asked] == [None]
    assert getattr(heard[-1], "via", "?") is None


BUSY = (503, {"x-frumit-busy": "siblings", "retry-after": "1"})


async def test_a_busy_sibling_sends_the_child_on_without_counting_it_failed() -> None:
    """The first sibling is busy serving other sites: the second sibling is asked, and when it
    holds nothing the parent. The busy one is not marked down: the next object asks it first
    again, and takes it from there once it is free (busy is not remembered as absence)."""
    net = Recorder({"10.0.1.1": BUSY, "10.0.1.2": (504, {})})
    origin = Recorder({})
    cfg = FederationConfig(
        key=KEY, parents=["10.0.0.1"], siblings=["10.0.1.1", "10.0.1.2"], retry_after_s=3600.0
    )
    transport = FederationTransport(
        origin.transport(), config=cfg, key=KEY.encode(), links=net.transport()
    )
    response = await transport.handle_async_request(fetch())
    assert response.extensions[VIA_EXTENSION] == "parent@10.0.0.1:3147"
    assert [r.url.host for r in net.asked] == ["10.0.1.1", "10.0.1.2", "10.0.0.1"]
    busy = transport.links[0]
    assert (busy.busy, busy.passed, busy.failures, busy.down_until) == (1, 1, 0, -1.0)
    net.asked.clear()
    net.answers["10.0.1.1"] = (200, {})  # free again
    response = await transport.handle_async_request(fetch())
    assert response.extensions[VIA_EXTENSION] == "sibling@10.0.1.1:3147"
    assert [r.url.host for r in net.asked] == ["10.0.1.1"]
    assert origin.asked == []


async def test_a_sibling_busy_for_every_ask_does_not_stall_the_site() -> None:
    """Hostile: a sibling that answers busy to everything, a dead parent: every fetch falls
    through to the origin at once, and the sibling is still asked (and still not failed)."""
    net = Recorder({"10.0.1.1": BUSY, "10.0.0.1": (0, {}), "10.0.0.2": (0, {})})
    origin = Recorder({})
    transport = links(net, origin)
    for _ in range(3):
        response = await transport.handle_async_request(fetch())
        assert VIA_EXTENSION not in response.extensions  # the origin's answer
    assert len(origin.asked) == 3
    sibling = transport.links[0]
    assert (sibling.busy, sibling.failures) == (3, 0)
    assert [r.url.host for r in net.asked].count("10.0.1.1") == 3
