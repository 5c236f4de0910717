"""The seeder's fence, with the site faked and everything else real (store, uplink client,
throttled HTTP origin): a lease that lapses for a moment and comes back in the same term (late
acks on a loaded box) must not fail the fetch the whole site waits on."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import cast

import pytest
import trio

from frumitcache.agent import ContentService
from frumitcache.agent._sitelink import SiteLink
from frumitcache.config import OriginConfig
from frumitcache.origin import OriginFetcher
from frumitcache.site import Catalogue, ObjectManifest
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

MiB = 1024 * 1024
CHUNK = 256 * 1024


class _Node:
    """The site node as the seeder role uses it: a catalogue and announcements."""

    def __init__(self, site: _LapsingSite) -> None:
        self.catalogue = Catalogue()
        self.site = site
        self.failures: list[str] = []
        self.complete: list[ObjectManifest] = []

    def seeder(self) -> tuple[str, int] | None:
        return ("me", 1) if self.site.is_seeder() else None

    async def wait_seeder(self) -> tuple[str, int]:
        await trio.lowlevel.checkpoint()  # the lease is back at once (see _LapsingSite)
        return ("me", 1)

    async def wait_catalogue_change(self) -> None:
        await trio.sleep_forever()  # no members, so no reports

    async def announce_object(self, manifest: ObjectManifest) -> None:
        if manifest.complete:
            self.complete.append(manifest)

    async def announce_chunk(self, url: str, index: int, digest: bytes, chunk_size: int) -> None:
        self.site.announced += 1

    async def announce_failure(self, url: str, code: str, message: str, status: int) -> None:
        self.failures.append(message)


class _LapsingSite:
    """This node is the seeder; after :meth:`start_lapse` (which wakes the fence like the
    driver's seeder-changed hook), the fence's next look finds the lease gone, and every later
    look finds it back (same term): the race a loaded box runs into."""

    node_id = "me"
    solo = False

    def __init__(self, *, busy_when_fenced: bool) -> None:
        self.node = _Node(self)
        self.busy_when_fenced = busy_when_fenced
        self.lapse = False
        self.lapsed = 0
        self.announced = 0
        self.on_fetch: object = None
        self.seeder_changed = trio.Event()

    def start_lapse(self) -> None:
        self.lapse = True
        event, self.seeder_changed = self.seeder_changed, trio.Event()
        event.set()

    def lease_until(self) -> float:
        return trio.current_time() + 1.0  # renewed at every look, as a live lease is

    def parts(self) -> tuple[_Node, None]:
        return self.node, None

    def is_seeder(self) -> bool:
        if self.lapse:
            self.lapse = False
            self.lapsed += 1
            return False
        return True

    def holders(self, nodes: object) -> tuple[()]:
        return ()

    async def seed_chunk(self, digest: bytes) -> None:
        if self.busy_when_fenced and self.lapse:
            # The announcing loop is in a shielded call (libtorrent, a thread) when the fence
            # fires, and stays there while the cancelled origin fetch aborts its writer.
            with trio.CancelScope(shield=True):
                while not self.lapsed:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                await trio.sleep(0.3)


@pytest.mark.parametrize("busy_when_fenced", [False, True])
async def test_a_lease_that_lapses_and_comes_back_does_not_fail_the_fetch(
    tmp_path: Path, busy_when_fenced: bool
) -> None:
    data = os.urandom(8 * MiB)
    origin = OriginServer(rate=4 * MiB)  # 2 s: the lapse lands in the middle
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK)
    fetcher = OriginFetcher(
        OriginConfig(connect_timeout_s=2, read_timeout_s=5, allow=["127.0.0.0/8:*"]), store
    )
    site = _LapsingSite(busy_when_fenced=busy_when_fenced)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(origin.serve, loopback_address())
            origin.add("/big.bin", data)
            service = ContentService(store, fetcher, nursery, cast("SiteLink", site))
            flight = service.ensure(origin.url("/big.bin"), None, door="site")
            with trio.fail_after(30):
                while origin.stats.bytes_sent["/big.bin"] < len(data) // 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                site.start_lapse()
                manifest = await flight.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        store.close()
    assert site.lapsed == 1  # the fence saw the lapse and stopped the fetch
    assert manifest.digest == hashlib.sha256(data).digest()
    assert site.node.failures == []
    assert [m.digest for m in site.node.complete] == [manifest.digest]
    # Resumed with Range after the chunks already stored, not fetched again.
    assert origin.stats.requests["/big.bin"] == 2
    assert origin.stats.bytes_sent["/big.bin"] <= len(data) + CHUNK + 512 * 1024
