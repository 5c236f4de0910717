"""The origin fetcher against the real test origin on loopback, one behaviour per test."""

from __future__ import annotations

import contextlib
import gc
import hashlib
import random
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from frumitcache.errors import (
    DigestMismatchError,
    OriginError,
    OriginStatusError,
    OriginTruncatedError,
    OriginUnreachableError,
)
from frumitcache.origin import META_CONTENT_TYPE, META_ETAG, META_FETCHED_AT, OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.net import free_port, loopback_address
from frumitcache.testing.origin import Fault, OriginServer
from tests.origin.conftest import CHUNK
from tests.origin.helpers import stored_bytes

SIZE = 200_000  # 12 full chunks of 16 KiB and a short one
DATA = random.Random(7).randbytes(SIZE)
DIGEST = hashlib.sha256(DATA).digest()
Fetchers = Callable[..., OriginFetcher]


def ranges(origin: OriginServer, path: str) -> list[str | None]:
    """The Range header of every request for ``path``, in order."""
    return [r.headers.get("range") for r in origin.stats.log if r.path == path]


async def assert_nothing_stored(
    store: Store, fetcher: OriginFetcher, origin: OriginServer, path: str
) -> None:
    """No complete object, and no partial either: a clean fetch starts from byte 0."""
    assert store.lookup(origin.url(path)) is None
    origin.misbehave(path, None)
    before = len(origin.stats.log)
    await fetcher.fetch(origin.url(path))
    assert origin.stats.log[before].headers.get("range") is None


async def test_fetch_stores_and_accounts(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/a.bin", DATA, content_type="application/x-test")
    url = origin.url("/a.bin")
    with trio.fail_after(10):
        manifest = await fetcher.fetch(url)
        assert manifest.digest == DIGEST
        assert manifest.size == SIZE
        assert store.lookup(url) == manifest
        assert await stored_bytes(store, url) == DATA
        meta = store.key_meta(url)
        assert meta[META_ETAG].startswith('"')
        assert meta[META_CONTENT_TYPE] == "application/x-test"
        assert float(meta[META_FETCHED_AT]) > 0
        # Complete already: no origin request, and start() reports it as cached at once.
        async with trio.open_nursery() as nursery:
            info = await nursery.start(fetcher.fetch, url)
        assert info.cached
        assert info.size == SIZE
    assert origin.stats.requests["/a.bin"] == 1
    assert origin.stats.bytes_sent["/a.bin"] == SIZE
    stats = fetcher.statistics()
    assert stats.bytes_received == SIZE
    assert stats.bytes_by_host == {f"{origin.address}:{origin.port}": SIZE}
    assert stats.requests == 1
    assert stats.fetches == 1
    assert stats.active_fetches == 0


async def test_single_flight(origin: OriginServer, fetcher: OriginFetcher) -> None:
    origin.add("/big", DATA)
    origin.misbehave("/big", Fault(drip_rate=2_000_000))  # slow enough for all to pile up
    results: list[Any] = []

    async def ask() -> None:
        results.append(await fetcher.fetch(origin.url("/big")))

    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            for _ in range(20):
                nursery.start_soon(ask)
            # Every caller has run until it blocks (the leader on the dripping origin, the
            # rest on its flight): no sleep guessing how long that takes.
            await trio.testing.wait_all_tasks_blocked()
            assert fetcher.statistics().active_fetches == 1
            assert origin.stats.requests["/big"] == 1
    assert len(results) == 20
    assert {m.digest for m in results} == {DIGEST}
    assert origin.stats.requests["/big"] == 1
    assert origin.stats.bytes_sent["/big"] == SIZE
    assert fetcher.statistics().bytes_received == SIZE


async def test_single_flight_shares_errors(origin: OriginServer, fetcher: OriginFetcher) -> None:
    origin.add("/gone", DATA)
    origin.misbehave("/gone", Fault(status=404))
    errors: list[BaseException] = []

    async def ask() -> None:
        try:
            await fetcher.fetch(origin.url("/gone"))
        except OriginStatusError as exc:
            errors.append(exc)

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            for _ in range(10):
                nursery.start_soon(ask)
    assert len(errors) == 10
    assert all(isinstance(e, OriginStatusError) and e.status == 404 for e in errors)
    assert origin.stats.requests["/gone"] == 1


async def test_start_then_read_cut_through(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/slow", DATA)
    origin.misbehave("/slow", Fault(drip_rate=1_000_000))
    url = origin.url("/slow")
    received = bytearray()
    complete_at_first_chunk = None
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            info = await nursery.start(fetcher.fetch, url)
            assert not info.cached
            assert (info.size, info.offset) == (SIZE, 0)
            async with store.open_reader(url) as reader:
                async for chunk in reader:
                    if complete_at_first_chunk is None:
                        complete_at_first_chunk = store.lookup(url) is not None
                    received += chunk
    assert bytes(received) == DATA
    # The first chunk reached the reader while the origin was still sending the rest.
    assert complete_at_first_chunk is False
    assert origin.stats.requests["/slow"] == 1


async def test_start_raises_origin_errors_itself(
    origin: OriginServer, fetcher: OriginFetcher
) -> None:
    origin.misbehave("/x", Fault(status=503))
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            with pytest.raises(OriginStatusError) as info:
                await nursery.start(fetcher.fetch, origin.url("/x"))
    assert info.value.status == 503


@pytest.mark.parametrize("mode", ["drop_at", "truncate_at"])
async def test_resume_after_cut(
    origin: OriginServer, fetcher: OriginFetcher, store: Store, mode: str
) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault.from_json({mode: SIZE // 2, "times": 1}))
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/a"))
    assert manifest.digest == DIGEST
    assert await stored_bytes(store, origin.url("/a")) == DATA
    assert ranges(origin, "/a") == [None, f"bytes={SIZE // 2}-"]
    # Each byte crossed the uplink once.
    assert origin.stats.bytes_sent["/a"] == SIZE
    assert fetcher.statistics().bytes_received == SIZE
    assert fetcher.statistics().resumes == 1


async def test_stall_times_out_and_resumes(
    origin: OriginServer, fetchers: Fetchers, store: Store
) -> None:
    fetcher = fetchers(read_timeout_s=0.3)
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(stall_at=50_000, times=1))
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/a"))
    assert manifest.digest == DIGEST
    assert ranges(origin, "/a") == [None, "bytes=50000-"]
    assert origin.stats.bytes_sent["/a"] == SIZE


async def test_truncation_that_never_resumes_keeps_what_it_received(
    origin: OriginServer, fetchers: Fetchers, store: Store
) -> None:
    origin.add("/a", DATA)
    cut = 5 * CHUNK + 1000
    origin.misbehave("/a", Fault(truncate_at=cut))  # every time, Range or not
    fetcher = fetchers(retries=1)
    with trio.fail_after(10), pytest.raises(OriginTruncatedError):
        await fetcher.fetch(origin.url("/a"))
    assert store.lookup(origin.url("/a")) is None
    assert ranges(origin, "/a") == [None, f"bytes={cut}-"]  # the first try and one resume
    # A later fetch resumes after every byte the two tries brought, not from zero: the full
    # chunks are on disk and the store keeps the unfinished chunk's bytes (in memory) for the
    # key's next writer.
    origin.misbehave("/a", None)
    before = origin.stats.total_bytes_sent
    with trio.fail_after(10):
        manifest = await fetchers().fetch(origin.url("/a"))
    assert manifest.digest == DIGEST
    resumed_at = int(ranges(origin, "/a")[-1].removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
    assert resumed_at == 2 * cut
    assert resumed_at % CHUNK != 0  # past the last full chunk: the kept tail counted
    assert origin.stats.total_bytes_sent - before == SIZE - resumed_at
    # The validator of the interrupted fetch was kept for If-Range.
    assert origin.stats.log[-1].headers["if-range"] == store.key_meta(origin.url("/a"))["etag"]


@pytest.mark.parametrize("status", [404, 500])
async def test_error_status_stores_nothing(
    origin: OriginServer, fetcher: OriginFetcher, store: Store, status: int
) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(status=status))
    with trio.fail_after(10):
        with pytest.raises(OriginStatusError) as info:
            await fetcher.fetch(origin.url("/a"))
        assert info.value.status == status
        await assert_nothing_stored(store, fetcher, origin, "/a")


async def test_missing_file_is_a_404(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    with trio.fail_after(10), pytest.raises(OriginStatusError) as info:
        await fetcher.fetch(origin.url("/nothing"))
    assert info.value.status == 404
    assert store.lookup(origin.url("/nothing")) is None


async def test_content_length_announcing_more_than_sent(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(content_length=SIZE + 5000))
    with trio.fail_after(10):
        with pytest.raises(OriginTruncatedError, match="announced"):
            await fetcher.fetch(origin.url("/a"))
        # The short body was resumed once; the origin then refused the range (416).
        assert ranges(origin, "/a") == [None, f"bytes={SIZE}-"]
        await assert_nothing_stored(store, fetcher, origin, "/a")


@pytest.mark.parametrize("expect", ["size", "digest"])
async def test_content_length_announcing_less_than_sent(
    origin: OriginServer, fetcher: OriginFetcher, store: Store, expect: str
) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(content_length=SIZE - 5000))
    kwargs: dict[str, Any] = (
        {"expected_size": SIZE} if expect == "size" else {"expected_digest": DIGEST}
    )
    with trio.fail_after(10):
        with pytest.raises(DigestMismatchError):
            await fetcher.fetch(origin.url("/a"), **kwargs)
        await assert_nothing_stored(store, fetcher, origin, "/a")


async def test_expected_digest_mismatch_stores_nothing(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/a", DATA)
    wrong = hashlib.sha256(b"something else").digest()
    with trio.fail_after(10):
        with pytest.raises(DigestMismatchError):
            await fetcher.fetch(origin.url("/a"), expected_digest=wrong)
        assert store.lookup(wrong) is None
        assert store.lookup(DIGEST) is None
        await assert_nothing_stored(store, fetcher, origin, "/a")


async def test_expected_digest_already_held_needs_no_origin(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/a", DATA)
    origin.add("/mirror/a", DATA)
    with trio.fail_after(10):
        await fetcher.fetch(origin.url("/a"))
        manifest = await fetcher.fetch(origin.url("/mirror/a"), expected_digest=DIGEST)
    assert manifest.digest == DIGEST
    assert origin.stats.requests["/mirror/a"] == 0
    assert store.lookup(origin.url("/mirror/a")) == manifest  # the URL now names it too


async def test_redirects(origin: OriginServer, fetchers: Fetchers, store: Store) -> None:
    origin.add("/new", DATA)
    origin.misbehave("/old", Fault(redirect="/new"))
    origin.misbehave("/loop1", Fault(redirect="/loop2"))
    origin.misbehave("/loop2", Fault(redirect="/loop1"))
    fetcher = fetchers(max_redirects=3)
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/old"))
        assert manifest.digest == DIGEST
        assert store.lookup(origin.url("/old")) == manifest
        with pytest.raises(OriginError, match="redirects"):
            await fetcher.fetch(origin.url("/loop1"))
    assert store.lookup(origin.url("/loop1")) is None
    assert fetcher.statistics().requests == 2 + 4


async def test_server_ignoring_range_restarts_from_zero(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/a", DATA)
    half = SIZE // 2
    origin.misbehave("/a", Fault(drop_at=half, times=1, then=Fault(ignore_range=True)))
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/a"))
    assert manifest.digest == DIGEST
    assert await stored_bytes(store, origin.url("/a")) == DATA
    assert ranges(origin, "/a") == [None, f"bytes={half}-"]
    # The second answer was the whole object (200), used as is: no third request.
    assert [r.status for r in origin.stats.log] == [200, 200]
    assert origin.stats.bytes_sent["/a"] == half + SIZE


async def test_content_changed_before_resume(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    new = DATA[::-1]
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(drop_at=SIZE // 2, times=1, replace_with=new))
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/a"))
    # If-Range carried the old validator, so the origin sent the new object whole.
    second = origin.stats.log[1]
    assert second.headers["range"] == f"bytes={SIZE // 2}-"
    assert second.headers["if-range"]
    assert second.status == 200
    assert manifest.digest == hashlib.sha256(new).digest()
    assert await stored_bytes(store, origin.url("/a")) == new


async def test_revalidate(origin: OriginServer, fetcher: OriginFetcher, store: Store) -> None:
    origin.add("/InRelease", b"index v1")
    url = origin.url("/InRelease")
    with trio.fail_after(10):
        first = await fetcher.fetch(url, revalidate=True)
        fetched_at = store.key_meta(url)[META_FETCHED_AT]
        await trio.sleep(0.01)
        same = await fetcher.fetch(url, revalidate=True)
        assert same == first
        log = origin.stats.log[-1]
        assert log.status == 304
        assert log.headers["if-none-match"] == store.key_meta(url)[META_ETAG]
        assert store.key_meta(url)[META_FETCHED_AT] > fetched_at
        origin.add("/InRelease", b"index v2")
        changed = await fetcher.fetch(url, revalidate=True)
    assert changed.digest == hashlib.sha256(b"index v2").digest()
    assert store.lookup(url) == changed
    assert await stored_bytes(store, url) == b"index v2"
    assert [r.status for r in origin.stats.log] == [200, 304, 200]


async def test_leader_cancelled_follower_takes_over(
    origin: OriginServer, fetcher: OriginFetcher, store: Store
) -> None:
    origin.add("/a", DATA)
    origin.misbehave("/a", Fault(drip_rate=500_000))
    got: list[Any] = []

    async def follower() -> None:
        got.append(await fetcher.fetch(origin.url("/a")))

    with trio.fail_after(10):
        async with trio.open_nursery() as outer, trio.open_nursery() as leader:
            await leader.start(fetcher.fetch, origin.url("/a"))
            outer.start_soon(follower)
            # Cancel the leader once two full chunks are stored (an event, not a sleep).
            async with contextlib.aclosing(store.watch_chunks(origin.url("/a"))) as chunks:
                async for index, _digest in chunks:
                    if index == 1:
                        break
            leader.cancel_scope.cancel()
    assert [m.digest for m in got] == [DIGEST]
    assert await stored_bytes(store, origin.url("/a")) == DATA
    # The follower resumed from the leader's full chunks, so only the leader's unfinished
    # chunk (and what was in flight when it stopped) crossed the uplink twice.
    first, second = ranges(origin, "/a")
    assert first is None
    assert second is not None
    resumed_at = int(second.removeprefix("bytes=").rstrip("-"))
    assert resumed_at > 0
    assert resumed_at % CHUNK == 0
    first_sent = origin.stats.log[0].bytes_sent
    assert origin.stats.log[1].bytes_sent == SIZE - resumed_at
    assert first_sent - resumed_at < CHUNK + 64 * 1024, (first_sent, resumed_at)


async def test_a_fetch_cancelled_mid_body_leaves_nothing_for_the_garbage_collector(
    origin: OriginServer, fetchers: Fetchers, store: Store
) -> None:
    """httpx reads a body through a chain of async generators: a fetch cancelled half-way
    must close them itself. Left suspended, the garbage collector finalises them later, and
    trio's ResourceWarning fails whichever test is running then (seen under Debian's httpx).
    The uplink budget holds the fetch between two pieces, outside the generators, when the
    cancel comes (as a fenced seeder's fetch often is: writing, or paced)."""
    origin.add("/a", DATA)
    fetcher = fetchers(max_rate=100_000)
    with trio.fail_after(10):
        async with trio.open_nursery() as leader:
            await leader.start(fetcher.fetch, origin.url("/a"))
            async with contextlib.aclosing(store.watch_chunks(origin.url("/a"))) as chunks:
                async for index, _digest in chunks:
                    if index == 1:
                        break
            leader.cancel_scope.cancel()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            gc.collect()
            await trio.testing.wait_all_tasks_blocked()  # trio's finalisers, if any, run
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert store.lookup(origin.url("/a")) is None


async def test_unreachable_origin(fetcher: OriginFetcher, store: Store) -> None:
    address = loopback_address()
    url = f"http://{address}:{free_port(address)}/a"
    with trio.fail_after(10), pytest.raises(OriginUnreachableError):
        await fetcher.fetch(url)
    assert store.lookup(url) is None


async def test_through_upstream_proxy(
    origin: OriginServer, fetchers: Fetchers, store: Store
) -> None:
    """The origin URL names a host where nothing listens; only the proxy can answer it."""
    origin.add("/via-proxy", DATA)
    elsewhere = loopback_address()
    url = f"http://{elsewhere}:{free_port(elsewhere)}/via-proxy"
    fetcher = fetchers(proxy=origin.url(""))
    with trio.fail_after(10):
        manifest = await fetcher.fetch(url)
    assert manifest.digest == DIGEST
    assert origin.stats.log[0].target == url  # absolute-form: spoken to as a proxy
    assert store.lookup(url) == manifest


async def test_rate_limit_holds_as_a_rate_over_concurrent_fetches(
    origin: OriginServer, fetchers: Fetchers
) -> None:
    # Two fetches share one budget: 400 kB at 500 kB/s, after the bucket's 64 KiB burst,
    # cannot take less than ~0.67 s. A lower bound checks the limiter (no upper bound: a
    # slow machine is not a failure). Unlimited, this takes a few ms on loopback.
    rate = 500_000
    fetcher = fetchers(max_rate=rate)
    origin.add("/a", DATA)
    origin.add("/b", DATA[::-1])
    with trio.fail_after(10):
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(fetcher.fetch, origin.url("/a"))
            nursery.start_soon(fetcher.fetch, origin.url("/b"))
        elapsed = trio.current_time() - start
    stats = fetcher.statistics()
    assert stats.bytes_received == 2 * SIZE == origin.stats.total_bytes_sent
    assert elapsed >= 0.9 * (2 * SIZE - 64 * 1024) / rate, elapsed


async def test_empty_object(origin: OriginServer, fetcher: OriginFetcher, store: Store) -> None:
    origin.add("/empty", b"")
    with trio.fail_after(10):
        manifest = await fetcher.fetch(origin.url("/empty"))
    assert (manifest.size, manifest.digest) == (0, hashlib.sha256(b"").digest())
    assert store.lookup(origin.url("/empty")) == manifest
