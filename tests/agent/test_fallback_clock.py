"""When a member gives up on the site and fetches the origin itself (``site.fallback =
after-timeout``): only after the site got nowhere for ``fallback_timeout_s``. The member role
is scripted here (real store, uplink client and HTTP origin, the site faked): what is under
test is the content service's fallback clock."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import trio

from frumitcache.agent import ContentService
from frumitcache.agent._flight import Flight
from frumitcache.agent._sitelink import SiteLink
from frumitcache.config import OriginConfig, SiteConfig
from frumitcache.errors import PeerError
from frumitcache.origin import OriginFetcher
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

CHUNK = 256 * 1024
DATA = os.urandom(4 * CHUNK)
TIMEOUT_S = 1.0


class _Node:
    def seeder(self) -> tuple[str, int]:
        return ("other", 1)  # a member's view: someone else seeds


class _MemberSite:
    node_id = "me"
    solo = False

    def __init__(self) -> None:
        self.node = _Node()
        self.on_fetch: object = None
        self.seeder_changed = trio.Event()  # never set: the seeder stays

    def parts(self) -> tuple[_Node, None]:
        return self.node, None


Attempt = Callable[[Store, Flight], Awaitable[None]]


async def _run(tmp_path: Path, attempts: list[Attempt]) -> tuple[ContentService, OriginServer]:
    origin = OriginServer()
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK)
    fetcher = OriginFetcher(
        OriginConfig(connect_timeout_s=2, read_timeout_s=5, allow=["127.0.0.0/8:*"]), store
    )
    config = SiteConfig(fallback="after-timeout", fallback_timeout_s=TIMEOUT_S)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(origin.serve, loopback_address())
            origin.add("/obj.bin", DATA)
            service = ContentService(
                store, fetcher, nursery, cast("SiteLink", _MemberSite()), config
            )
            script = iter(attempts)

            async def member_fetch(flight: Flight, seeder: tuple[str, int]) -> None:
                await next(script)(store, flight)

            service._member.fetch = member_fetch  # type: ignore[method-assign]
            flight = service.ensure(origin.url("/obj.bin"), None, door="site")
            with trio.fail_after(20):
                manifest = await flight.wait()
            assert manifest.digest == hashlib.sha256(DATA).digest()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        store.close()
    return service, origin


async def _unreachable(store: Store, flight: Flight) -> None:
    await trio.sleep(0.1)
    raise PeerError("the seeder did not answer")


async def _slow_progress(store: Store, flight: Flight) -> None:
    """Two chunks from the site over more than the fallback timeout, then a holder is gone."""
    writer = store.open_writer(flight.url)
    for i in range(2):
        await trio.sleep(TIMEOUT_S)
        await writer.write(DATA[i * CHUNK : (i + 1) * CHUNK])
    await writer.abort()
    raise PeerError("object incomplete: no holder for chunk 2")


async def _the_rest(store: Store, flight: Flight) -> None:
    writer = store.open_writer(flight.url)
    await writer.write(DATA[writer.offset :])
    flight.manifest = await writer.finish()


async def test_an_attempt_that_brought_chunks_restarts_the_fallback_clock(
    tmp_path: Path,
) -> None:
    service, origin = await _run(tmp_path, [_unreachable, _slow_progress, _the_rest])
    # The second failure came more than the timeout after the first, but the site was
    # delivering in between: no fallback, the origin never asked.
    assert service.stats.fallbacks == 0
    assert origin.stats.requests["/obj.bin"] == 0


async def test_a_site_that_gets_nowhere_falls_back_after_the_timeout(tmp_path: Path) -> None:
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_unreachable] * 10)
    assert service.stats.fallbacks == 1
    assert origin.stats.requests["/obj.bin"] == 1
    assert trio.current_time() - started >= TIMEOUT_S
