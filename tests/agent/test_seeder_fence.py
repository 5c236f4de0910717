"""The seeder's fence, with the site faked and everything else real (store, uplink client,
throttled HTTP origin). A lease that lapses and comes back (late acks on a loaded box), in the
same term however much later than ``lease_s`` or in a new term this node won, holds the fetch:
one origin request, the object's bytes exactly once. Another seeder named stops the fetch at
once, and so does a lease not back within the bound (``site.fallback_timeout_s``) while this
node hears no majority of its site; the next seeder term resumes it with Range as before."""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import cast

import pytest
import trio

from frumitcache.agent import ContentService
from frumitcache.agent._sitelink import SiteLink
from frumitcache.config import OriginConfig, SiteConfig
from frumitcache.origin import OriginFetcher
from frumitcache.site import Catalogue, ObjectManifest, Reports
from frumitcache.store import Store
from frumitcache.testing.net import loopback_address
from frumitcache.testing.origin import OriginServer

MiB = 1024 * 1024
CHUNK = 256 * 1024
LEASE = 2.0  # site.lease_s
BOUND = 4.0  # site.fallback_timeout_s: how long the fence holds without evidence
URL_PATH = "/big.bin"


class _Node:
    """The site node as the seeder role uses it: a catalogue and announcements. It names a
    seeder only while it is this node (a flight here never fetches from a member)."""

    def __init__(self, site: _Site) -> None:
        self.catalogue = Catalogue()
        self.site = site
        self.failures: list[str] = []
        self.complete: list[ObjectManifest] = []
        self.partials: list[ObjectManifest] = []

    def seeder(self) -> tuple[str, int] | None:
        return self.site.seeder() if self.site.is_seeder() else None

    def hears_site(self) -> bool:
        return True  # a loaded site, not a partition

    async def wait_seeder(self) -> tuple[str, int]:
        while not self.site.is_seeder():
            await self.site.lease_changed.wait()
        return (self.site.node_id, self.site.term)

    async def wait_catalogue_change(self) -> None:
        await trio.sleep_forever()  # no members, so no reports

    def reports(self) -> Reports:
        return Reports(-math.inf, None, frozenset(), frozenset())  # nobody to wait for

    async def announce_object(self, manifest: ObjectManifest) -> None:
        (self.complete if manifest.complete else self.partials).append(manifest)

    async def announce_chunk(self, url: str, index: int, digest: bytes, chunk_size: int) -> None:
        self.site.announced += 1

    async def announce_failure(self, url: str, code: str, message: str, status: int) -> None:
        self.failures.append(message)


class _Site:
    """This node (``me``) is the seeder of ``term`` while ``live``; the test lapses the lease
    (as the driver's seeder-changed hook reports it), renews it (late acks: the lease hook
    only), names another seeder, or elects this node in a new term."""

    node_id = "me"
    solo = False

    def __init__(self, *, busy_when_fenced: bool = False) -> None:
        self.node = _Node(self)
        self.busy_when_fenced = busy_when_fenced
        self.live = True
        self.term = 1
        self.other: tuple[str, int] | None = None
        self.lapsed_at = -math.inf
        self.stepped_down = False
        self.majority = True  # hears its site: a lapse is late acks, not a partition
        self.announced = 0
        self.on_fetch: object = None
        self.seeder_changed = trio.Event()
        self.lease_changed = trio.Event()

    def _wake(self, *, changed: bool) -> None:
        if changed:
            event, self.seeder_changed = self.seeder_changed, trio.Event()
            event.set()
        event, self.lease_changed = self.lease_changed, trio.Event()
        event.set()

    def lapse(self) -> None:
        self.live, self.lapsed_at = False, trio.current_time()
        self._wake(changed=True)

    def renew(self) -> None:
        self.live = True
        self._wake(changed=False)

    def name(self, other: tuple[str, int]) -> None:
        self.other = other
        self._wake(changed=True)

    def step_down(self) -> None:
        """Stood again, or voted for another candidate: the role is gone for this term."""
        self.live, self.stepped_down = False, True
        self._wake(changed=True)

    def elect(self, term: int) -> None:
        self.live, self.term, self.other, self.stepped_down = True, term, None, False
        self._wake(changed=True)

    def is_seeder(self) -> bool:
        return self.live

    def seeder(self) -> tuple[str, int] | None:
        return (self.node_id, self.term) if self.live else self.other

    def hears_site(self) -> bool:
        return self.majority

    def lease_until(self) -> float:
        # Renewed at every look while live, as a live lease is; lapsed (role kept) otherwise.
        if self.stepped_down:
            return -math.inf
        return trio.current_time() + LEASE if self.live else self.lapsed_at

    def parts(self) -> tuple[_Node, None]:
        return self.node, None

    def holders(self, nodes: object) -> tuple[()]:
        return ()

    async def seed_chunk(self, digest: bytes) -> None:
        if self.busy_when_fenced and not self.live:
            # The announcing loop is in a shielded call (libtorrent, a thread) when the fence
            # fires, and stays there while the cancelled origin fetch aborts its writer.
            with trio.CancelScope(shield=True):
                await trio.sleep(BOUND + 0.3)


async def _with_fetch(tmp_path: Path, site: _Site, data: bytes, drive: object) -> tuple[
    OriginServer, Store, bytes
]:  # fmt: skip
    """Fetch ``data`` through the seeder role while ``drive(origin, store, url)`` plays the
    site; return the origin, the store and the digest fetched."""
    origin = OriginServer(rate=4 * MiB)  # 2 s for 8 MiB: the lapse lands in the middle
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK)
    # A read timeout shorter than a hold: a held fetch is between reads, so it never trips.
    fetcher = OriginFetcher(
        OriginConfig(connect_timeout_s=2, read_timeout_s=0.5, allow=["127.0.0.0/8:*"]), store
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(origin.serve, loopback_address())
            origin.add(URL_PATH, data)
            service = ContentService(
                store,
                fetcher,
                nursery,
                cast("SiteLink", site),
                SiteConfig(lease_s=LEASE, fallback_timeout_s=BOUND),
            )
            url = origin.url(URL_PATH)
            flight = service.ensure(url, None, door="site")
            with trio.fail_after(30):
                while origin.stats.bytes_sent[URL_PATH] < len(data) // 2:  # noqa: ASYNC110
                    await trio.sleep(0.01)
                await drive(origin, store, url)  # type: ignore[operator]
                manifest = await flight.wait()
            nursery.cancel_scope.cancel()
    finally:
        with trio.CancelScope(shield=True):
            await fetcher.aclose()
        store.close()
    assert site.node.failures == []
    assert [m.digest for m in site.node.complete] == [manifest.digest]
    return origin, store, manifest.digest


async def test_a_lease_that_lapses_and_comes_back_holds_the_fetch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(8 * MiB)
    site = _Site()

    async def drive(origin: OriginServer, store: Store, url: str) -> None:
        site.lapse()
        await trio.sleep(0.2)
        stored, sent = len(store.partial_chunks(url)), origin.stats.bytes_sent
        sent_then, announced = sent[URL_PATH], site.announced
        await trio.sleep(LEASE / 2)  # longer than the read timeout, within the grace
        # Held: nothing stored or announced, and the origin stalls once the buffers are full.
        assert len(store.partial_chunks(url)) == stored
        assert site.announced == announced
        assert sent[URL_PATH] - sent_then < 4 * MiB * LEASE / 2 / 2
        site.renew()

    origin, _, digest = await _with_fetch(tmp_path, site, data, drive)
    assert digest == hashlib.sha256(data).digest()
    assert "seeder.held" in caplog.messages
    assert "seeder.fenced" not in caplog.messages
    # One request, and the origin sent the object's bytes exactly once.
    assert origin.stats.requests[URL_PATH] == 1
    assert origin.stats.bytes_sent[URL_PATH] == len(data)


async def test_a_lease_back_in_the_same_term_long_after_lease_s_holds_the_fetch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The N = 100 herd on 2 cores: the lease came back in the same term 3.5-4 s after it
    # lapsed (lease_s 3 s); a fence at lease_s paid the bytes in flight every time. No
    # evidence that the lease cannot come back (no other seeder, no step-down): held.
    data = os.urandom(8 * MiB)
    site = _Site()

    async def drive(origin: OriginServer, store: Store, url: str) -> None:
        site.lapse()
        await trio.sleep(LEASE + 0.5)  # past lease_s (the old grace), within the bound
        assert "seeder.fenced" not in caplog.messages
        site.renew()

    origin, _, digest = await _with_fetch(tmp_path, site, data, drive)
    assert digest == hashlib.sha256(data).digest()
    assert "seeder.held" in caplog.messages
    assert "seeder.fenced" not in caplog.messages
    assert origin.stats.requests[URL_PATH] == 1
    assert origin.stats.bytes_sent[URL_PATH] == len(data)


async def test_a_new_term_won_while_held_goes_on_with_the_same_fetch(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The lapsed seeder stood again and won the next term with no other seeder named
    # meanwhile: its held fetch goes on (one request, the bytes exactly once) after it
    # re-announced the object, with its size, to the new term's catalogue.
    caplog.set_level("INFO", logger="frumitcache.content")
    data = os.urandom(8 * MiB)
    site = _Site()

    async def drive(origin: OriginServer, store: Store, url: str) -> None:
        site.lapse()
        await trio.sleep(0.1)
        site.step_down()
        await trio.sleep(0.5)
        assert "seeder.fenced" not in caplog.messages
        site.elect(2)

    origin, _, digest = await _with_fetch(tmp_path, site, data, drive)
    assert digest == hashlib.sha256(data).digest()
    assert "seeder.new-term" in caplog.messages
    assert "seeder.fenced" not in caplog.messages
    assert origin.stats.requests[URL_PATH] == 1
    assert origin.stats.bytes_sent[URL_PATH] == len(data)
    # The first announcement and the new term's, both with the size.
    assert [m.size for m in site.node.partials] == [len(data), len(data)]


@pytest.mark.parametrize("busy_when_fenced", [False, True])
async def test_a_lease_that_does_not_come_back_stops_the_fetch_and_the_next_term_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, busy_when_fenced: bool
) -> None:
    data = os.urandom(8 * MiB)
    site = _Site(busy_when_fenced=busy_when_fenced)

    async def drive(origin: OriginServer, store: Store, url: str) -> None:
        site.lapse()
        site.majority = False  # cut off from the site (a partition's minority side)
        await trio.sleep(BOUND + 0.5)  # the bound ran out: the fetch was stopped
        assert "seeder.fenced" in caplog.messages
        site.elect(2)  # this node wins the next term: it resumes its partial

    origin, _, digest = await _with_fetch(tmp_path, site, data, drive)
    assert digest == hashlib.sha256(data).digest()
    # Resumed with Range after the chunks already stored, not fetched again (that would be
    # 12 MiB at least); what was in flight when it stopped (socket buffers) is lost.
    assert origin.stats.requests[URL_PATH] == 2
    assert origin.stats.bytes_sent[URL_PATH] < len(data) + len(data) // 4


async def test_another_seeder_named_while_held_stops_the_fetch_at_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(8 * MiB)
    site = _Site()

    async def drive(origin: OriginServer, store: Store, url: str) -> None:
        site.lapse()
        await trio.sleep(0.1)
        assert "seeder.held" in caplog.messages
        site.name(("other", 2))
        with trio.fail_after(BOUND / 2):  # at once, not at the bound
            while "seeder.fenced" not in caplog.messages:  # noqa: ASYNC110
                await trio.sleep(0.01)
        site.elect(3)  # the other seeder is gone in turn and this node wins: it resumes

    origin, _, digest = await _with_fetch(tmp_path, site, data, drive)
    assert digest == hashlib.sha256(data).digest()
    assert origin.stats.requests[URL_PATH] == 2
