"""When a member gives up on the site and fetches the origin itself (``site.fallback =
after-timeout``): only after the site got nowhere for ``fallback_timeout_s`` with no seeder
named, for ``STUCK_FACTOR`` times that with a seeder named but the site not moving (no chunk
here or learned of in the site, no new term), or for ``CAP_FACTOR`` times that with no chunk
arriving here whatever the site shows. The pure
clock first; then the member role scripted (real store, uplink client and HTTP origin, the
site faked): what is under test is the content service's use of the clock."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import cast

import trio

from frumitcache.agent import ContentService
from frumitcache.agent._fallback import CAP_FACTOR, STUCK_FACTOR, FallbackClock, Verdict
from frumitcache.agent._flight import Flight
from frumitcache.agent._member import SeederChanged
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
    named: tuple[str, int] | None = ("other", 1)  # a member's view: someone else seeds
    majority = False  # hears a majority of its site (it can elect a seeder)
    named_at = float("inf")  # trio time from which ``later`` is named instead of ``named``
    later: tuple[str, int] | None = None
    lapsed = (float("inf"), float("inf"))  # trio times between which none is named

    def seeder(self) -> tuple[str, int] | None:
        now = trio.current_time()
        if self.lapsed[0] <= now < self.lapsed[1]:
            return None
        return self.later if now >= self.named_at else self.named

    def hears_site(self) -> bool:
        return self.majority

    async def wait_seeder(self) -> tuple[str, int]:
        await trio.sleep_forever()
        raise AssertionError("unreachable")


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


async def _run(
    tmp_path: Path,
    attempts: list[Attempt],
    *,
    named: bool = True,
    majority: bool = False,
    named_after: float = float("inf"),
    lapsed: tuple[float, float] = (float("inf"), float("inf")),
) -> tuple[ContentService, OriginServer]:
    origin = OriginServer()
    store = Store.open(tmp_path / "store", max_bytes=1 << 30, chunk_size=CHUNK)
    fetcher = OriginFetcher(
        OriginConfig(connect_timeout_s=2, read_timeout_s=5, allow=["127.0.0.0/8:*"]), store
    )
    # lease_s bounds how long a member waits for a seeder to be named before an attempt fails.
    config = SiteConfig(
        fallback="after-timeout", fallback_timeout_s=TIMEOUT_S, lease_s=0.1, election_round_s=0.05
    )
    site = _MemberSite()
    if not named:
        site.node.named = None
    site.node.majority = majority
    site.node.named_at, site.node.later = trio.current_time() + named_after, ("next", 2)
    site.node.lapsed = (trio.current_time() + lapsed[0], trio.current_time() + lapsed[1])
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(origin.serve, loopback_address())
            origin.add("/obj.bin", DATA)
            service = ContentService(store, fetcher, nursery, cast("SiteLink", site), config)
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


async def test_a_site_with_no_seeder_named_falls_back_after_the_timeout(tmp_path: Path) -> None:
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_unreachable] * 10, named=False)
    assert service.stats.fallbacks == 1
    assert origin.stats.requests["/obj.bin"] == 1
    assert trio.current_time() - started >= TIMEOUT_S


async def test_a_named_seeder_that_never_answers_gets_longer_then_falls_back(
    tmp_path: Path,
) -> None:
    # Its leases arrive (named) but no request is answered and no chunk comes: hostile or
    # wedged. The member waits STUCK_FACTOR times the timeout, not forever.
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_unreachable] * 20)
    assert service.stats.fallbacks == 1
    assert origin.stats.requests["/obj.bin"] == 1
    assert trio.current_time() - started >= STUCK_FACTOR * TIMEOUT_S


async def test_a_member_that_hears_its_site_waits_for_a_seeder_instead_of_the_origin(
    tmp_path: Path,
) -> None:
    # The seeder's lease lapsed in this member's view (a loaded site: late renewals) and no
    # seeder is named for longer than the timeout, but the member hears a majority of its
    # site, which will name one (the same, or the next): the member waits for it and gets
    # the object from it. The origin is not asked.
    service, origin = await _run(
        tmp_path, [_the_rest], named=False, majority=True, named_after=3 * TIMEOUT_S
    )
    assert service.stats.fallbacks == 0
    assert origin.stats.requests["/obj.bin"] == 0


async def test_a_member_cut_off_from_its_site_falls_back_after_the_timeout(
    tmp_path: Path,
) -> None:
    # Hostile: the minority side of a partition (no seeder, no majority heard) is what the
    # fallback is for: after the timeout, not the stuck time.
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_unreachable] * 10, named=False, majority=False)
    assert service.stats.fallbacks == 1
    assert origin.stats.requests["/obj.bin"] == 1
    assert trio.current_time() - started >= TIMEOUT_S


async def test_a_site_heard_that_never_names_a_seeder_falls_back_after_the_stuck_time(
    tmp_path: Path,
) -> None:
    # Hostile: most of the site answers beacons but no seeder ever comes (elections that
    # never end): liveness, after STUCK_FACTOR times the timeout.
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_unreachable] * 10, named=False, majority=True)
    assert service.stats.fallbacks == 1
    assert origin.stats.requests["/obj.bin"] == 1
    assert trio.current_time() - started >= STUCK_FACTOR * TIMEOUT_S


def _learning(count: list[int]) -> Attempt:
    """An attempt that learns one more chunk in the site (the seeder announced it), gets
    none of it here, then fails: a loaded site that moves."""

    async def attempt(store: Store, flight: Flight) -> None:
        count[0] += 1
        flight.learned(count[0])
        await _unreachable(store, flight)

    return attempt


async def test_a_site_that_learns_chunks_is_waited_for_past_the_stuck_time(
    tmp_path: Path,
) -> None:
    # About 0.6 s per failed attempt: 9 of them take longer than the stuck time, without a
    # chunk here. Before: a fallback after STUCK_FACTOR x the timeout.
    count = [0]
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_learning(count)] * 9 + [_the_rest])
    assert trio.current_time() - started > STUCK_FACTOR * TIMEOUT_S
    assert service.stats.fallbacks == 0
    assert origin.stats.requests["/obj.bin"] == 0


async def test_a_new_term_is_waited_for_past_the_stuck_time(tmp_path: Path) -> None:
    # The seeder never answers; a new term is named before the stuck time (the measured case:
    # a seeder held, then elected again). The member waits for it. Before: a fallback.
    unreachable: Attempt = _unreachable
    attempts = [unreachable] * 9 + [_the_rest]
    started = trio.current_time()
    service, origin = await _run(tmp_path, attempts, named_after=0.6 * STUCK_FACTOR * TIMEOUT_S)
    assert trio.current_time() - started > STUCK_FACTOR * TIMEOUT_S
    assert service.stats.fallbacks == 0
    assert origin.stats.requests["/obj.bin"] == 0


async def _seeder_changed(store: Store, flight: Flight) -> None:
    raise SeederChanged()


async def test_a_new_term_that_lapses_before_the_next_failure_still_counts(
    tmp_path: Path,
) -> None:
    # A loaded site's terms last seconds: the member follows a new term (SeederChanged, not a
    # failure), and by its next failed attempt none is named again; then the same term
    # comes back (not news) and still does not answer. The term counts from when the
    # member followed it. Before: a fallback at STUCK_FACTOR x the timeout.
    unreachable: Attempt = _unreachable
    attempts = [unreachable] * 5 + [_seeder_changed, unreachable, _the_rest]
    started = trio.current_time()
    service, origin = await _run(
        tmp_path, attempts, majority=True, named_after=2.9, lapsed=(3.2, 5.6)
    )
    assert trio.current_time() - started > STUCK_FACTOR * TIMEOUT_S
    assert service.stats.failovers == 1
    assert service.stats.fallbacks == 0
    assert origin.stats.requests["/obj.bin"] == 0


async def test_a_site_that_moves_but_never_delivers_is_left_at_the_cap(tmp_path: Path) -> None:
    # Hostile: chunks announced that never reach this member. It leaves after CAP_FACTOR x
    # the timeout, not never.
    count = [0]
    started = trio.current_time()
    service, origin = await _run(tmp_path, [_learning(count)] * 40)
    assert service.stats.fallbacks == 1
    assert origin.stats.requests["/obj.bin"] == 1
    assert trio.current_time() - started >= CAP_FACTOR * TIMEOUT_S


# --- the pure clock ----------------------------------------------------------------------------


def test_clock_a_loaded_seeder_that_is_named_is_waited_for() -> None:
    # The N=100 herd: requests time out at a loaded seeder whose leases still arrive.
    clock = FallbackClock("after-timeout", 15.0, now=0.0)
    for now in range(0, 59, 3):
        clock.observe(float(now), seeder_named=True, held=0)
        assert clock.decide() is Verdict.RETRY, now
    clock.observe(60.0, seeder_named=True, held=0)
    assert clock.decide() is Verdict.ORIGIN  # stuck: STUCK_FACTOR x 15 s without a chunk


def test_clock_chunks_arriving_restart_both_clocks() -> None:
    clock = FallbackClock("after-timeout", 15.0, now=0.0)
    for step in range(1, 40):
        clock.observe(step * 10.0, seeder_named=step % 2 == 0, held=step)
        assert clock.decide() is Verdict.RETRY, step


def test_clock_no_seeder_named_falls_back_after_the_timeout() -> None:
    clock = FallbackClock("after-timeout", 15.0, now=100.0)
    clock.observe(100.0, seeder_named=True, held=0)
    clock.observe(110.0, seeder_named=False, held=0)
    assert clock.decide() is Verdict.RETRY  # named 10 s ago
    clock.observe(114.9, seeder_named=False, held=0)
    assert clock.decide() is Verdict.RETRY
    clock.observe(115.0, seeder_named=False, held=0)
    assert clock.decide() is Verdict.ORIGIN
    assert clock.waited() == 15.0


def test_clock_a_site_heard_without_a_seeder_named_is_waited_for() -> None:
    # The N = 100 herd: the seeder's lease lapsed in this member's view for 30 s (late
    # renewals), while the member heard most of its site: no fallback at 15 s.
    clock = FallbackClock("after-timeout", 15.0, now=0.0)
    for now in range(0, 59, 3):
        clock.observe(float(now), seeder_named=False, site_heard=True, held=0)
        assert clock.decide() is Verdict.RETRY, now
    clock.observe(60.0, seeder_named=False, site_heard=True, held=0)
    assert clock.decide() is Verdict.ORIGIN  # stuck: a site that never serves is left
    assert clock.waited() == 60.0


def test_clock_a_member_cut_off_falls_back_a_timeout_after_it_last_heard_its_site() -> None:
    # Hostile: a partition leaves the member on the minority side.
    clock = FallbackClock("after-timeout", 15.0, now=0.0)
    clock.observe(10.0, seeder_named=False, site_heard=True, held=0)
    clock.observe(24.9, seeder_named=False, site_heard=False, held=0)
    assert clock.decide() is Verdict.RETRY
    clock.observe(25.0, seeder_named=False, site_heard=False, held=0)
    assert clock.decide() is Verdict.ORIGIN
    assert clock.waited() == 15.0


def test_clock_modes() -> None:
    always = FallbackClock("always", 15.0, now=0.0)
    always.observe(0.0, seeder_named=True, held=0)
    assert always.decide() is Verdict.ORIGIN
    never = FallbackClock("never", 15.0, now=0.0)
    never.observe(14.0, seeder_named=False, held=0)
    assert never.decide() is Verdict.RETRY
    never.observe(15.0, seeder_named=False, held=0)
    assert never.decide() is Verdict.FAIL


def test_clock_time_going_backwards_changes_nothing() -> None:
    # Hostile input: an observation older than the last one (the clock is monotonic, but a
    # caller's stale sample must not reopen a closed window).
    clock = FallbackClock("after-timeout", 15.0, now=0.0)
    clock.observe(20.0, seeder_named=False, held=0)
    clock.observe(5.0, seeder_named=False, held=0)
    assert clock.decide() is Verdict.ORIGIN


# --- the site's progress (issue 14: a seeder held for 37 s, then a new term) --------------------

SEEDER = ("pi2", 35)


def test_clock_chunks_learned_in_the_site_restart_the_stuck_clock() -> None:
    # The seeder announces chunks (the member's plan learns them) but none has reached this
    # member yet (a loaded site): the site moves, the member stays.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, seeder=SEEDER)
    clock.observe(20.0, seeder_named=True, held=0, site_chunks=1, seeder=SEEDER)
    clock.observe(45.0, seeder_named=True, held=0, site_chunks=2, seeder=SEEDER)
    clock.observe(70.0, seeder_named=True, held=0, site_chunks=2, seeder=SEEDER)
    assert clock.decide() is Verdict.RETRY  # before: ORIGIN, 70 s without a chunk here
    clock.observe(104.9, seeder_named=True, held=0, site_chunks=2, seeder=SEEDER)
    assert clock.decide() is Verdict.RETRY
    clock.observe(105.0, seeder_named=True, held=0, site_chunks=2, seeder=SEEDER)
    assert clock.decide() is Verdict.ORIGIN  # nothing new for STUCK_FACTOR x 15 s
    assert clock.fired() == "stuck"
    assert clock.waited() == 60.0


def test_clock_a_new_term_restarts_the_stuck_clock() -> None:
    # The measured case: the seeder's lease lapsed, its fence held the fetch for 37 s, it won
    # a new term at ~58 s of this member's wait; the member's next failed attempt (the loaded
    # seeder does not answer in 2 s) came at 62 s. Before: ORIGIN.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, seeder=SEEDER)
    clock.observe(10.0, seeder_named=True, held=1, seeder=SEEDER)  # one chunk came
    clock.observe(30.0, seeder_named=False, site_heard=True, held=1)  # the lapse
    clock.observe(62.0, seeder_named=True, held=1, seeder=("pi2", 36))
    assert clock.decide() is Verdict.RETRY
    clock.observe(121.9, seeder_named=True, held=1, seeder=("pi2", 36))
    assert clock.decide() is Verdict.RETRY
    clock.observe(122.0, seeder_named=True, held=1, seeder=("pi2", 36))
    assert clock.decide() is Verdict.ORIGIN
    assert clock.fired() == "stuck"


def test_clock_a_seeder_named_after_none_restarts_the_stuck_clock() -> None:
    clock = FallbackClock("after-timeout", 15.0, now=0.0)  # no seeder named at the start
    clock.observe(40.0, seeder_named=False, site_heard=True, held=0)
    clock.observe(59.0, seeder_named=True, held=0, seeder=SEEDER)
    clock.observe(61.0, seeder_named=True, held=0, seeder=SEEDER)
    assert clock.decide() is Verdict.RETRY


def test_clock_the_same_term_named_again_after_a_lapse_is_not_progress() -> None:
    # This member's view of the lease lapsed and came back in the same term: nothing moved.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, seeder=SEEDER)
    clock.observe(30.0, seeder_named=False, site_heard=True, held=0)
    clock.observe(59.0, seeder_named=True, held=0, seeder=SEEDER)
    assert clock.decide() is Verdict.RETRY
    clock.observe(60.0, seeder_named=True, held=0, seeder=SEEDER)
    assert clock.decide() is Verdict.ORIGIN


def test_clock_a_site_that_moves_but_never_delivers_here_is_left_at_the_cap() -> None:
    # Hostile: a flapping site (a new term every few seconds) or one announcing chunks this
    # member cannot get. No chunk here for CAP_FACTOR x 15 s: the member leaves.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, seeder=SEEDER)
    cap = CAP_FACTOR * 15.0
    for step in range(1, int(cap / 5)):
        now = step * 5.0
        clock.observe(now, seeder_named=True, held=0, site_chunks=step, seeder=("pi2", step))
        assert clock.decide() is Verdict.RETRY, now
    clock.observe(cap, seeder_named=True, held=0, site_chunks=99, seeder=("pi3", 99))
    assert clock.decide() is Verdict.ORIGIN
    assert clock.fired() == "capped"
    assert clock.waited() == cap
    never = FallbackClock("never", 15.0, now=0.0, seeder=SEEDER)
    never.observe(cap, seeder_named=True, held=0, site_chunks=1, seeder=("pi3", 1))
    assert never.decide() is Verdict.FAIL


def test_clock_a_chunk_here_restarts_the_cap() -> None:
    clock = FallbackClock("after-timeout", 15.0, now=0.0, seeder=SEEDER)
    for step in range(1, 40):
        # A new term every 5 s (flapping), one chunk here every 100 s: it delivers.
        clock.observe(step * 5.0, seeder_named=True, held=step // 20, seeder=("pi2", step))
        assert clock.decide() is Verdict.RETRY, step


def test_clock_silent_still_falls_back_after_the_timeout_whatever_came_before() -> None:
    # Site progress does not stretch the silent rule: cut off is cut off.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, seeder=SEEDER)
    clock.observe(10.0, seeder_named=True, held=0, site_chunks=3, seeder=("pi2", 36))
    clock.observe(24.9, seeder_named=False, site_heard=False, held=0, site_chunks=3)
    assert clock.decide() is Verdict.RETRY
    clock.observe(25.0, seeder_named=False, site_heard=False, held=0, site_chunks=3)
    assert clock.decide() is Verdict.ORIGIN
    assert clock.fired() == "silent"
    assert clock.waited() == 15.0


def test_clock_a_lower_count_is_not_progress() -> None:
    # Hostile input: a new attempt's plan (a new seeder's catalogue) knows fewer chunks than
    # learned before, then as many again: neither is news.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, site_chunks=5, seeder=SEEDER)
    clock.observe(30.0, seeder_named=True, held=0, site_chunks=2, seeder=SEEDER)
    clock.observe(50.0, seeder_named=True, held=0, site_chunks=5, seeder=SEEDER)
    clock.observe(60.0, seeder_named=True, held=0, site_chunks=4, seeder=SEEDER)
    assert clock.decide() is Verdict.ORIGIN
    assert clock.site_chunks == 5


def test_clock_a_held_count_going_down_is_not_progress() -> None:
    # The writer dropped chunks that differ from the site's list: held shrinks, then grows
    # back to where it was. No chunk is new here.
    clock = FallbackClock("after-timeout", 15.0, now=0.0, held=3, seeder=SEEDER)
    clock.observe(20.0, seeder_named=True, held=0, seeder=SEEDER)
    clock.observe(40.0, seeder_named=True, held=3, seeder=SEEDER)
    clock.observe(60.0, seeder_named=True, held=3, seeder=SEEDER)
    assert clock.decide() is Verdict.ORIGIN
