"""The seeder's fence waits on events, not a polling loop: it wakes when the site says the
seeder changed and when the lease it last saw runs out; a renewed lease only moves that
deadline. A lapsed lease holds the fetch (no cancel) until the lease is back (the same term,
or a new term this node won: released), the site names another seeder (stopped at once), or
the bound runs out (stopped). The site is faked (pure timing logic); the real fence runs under
trio's mock clock."""

from __future__ import annotations

import math
from collections.abc import Awaitable
from typing import cast

import trio
import trio.testing

from frumitcache.agent._fallback import STUCK_FACTOR
from frumitcache.agent._seeder import _Fence
from frumitcache.agent._sitelink import SiteLink

GRACE = 3.0


class _Site:
    """A seeder (``me``, term 1) whose lease runs to ``until`` (trio time); ``looks`` counts
    the fence's checks."""

    node_id = "me"

    def __init__(self, until: float) -> None:
        self.until = until
        self.role_lost = False
        self.other: tuple[str, int] | None = None  # a seeder the site names instead
        self.term = 1
        self.majority = False  # cut off from the site unless a test says otherwise
        self.looks = 0
        self.seeder_changed = trio.Event()
        self.lease_changed = trio.Event()

    def _live(self) -> bool:
        return not self.role_lost and trio.current_time() < self.until

    def is_seeder(self) -> bool:
        self.looks += 1
        return self._live()

    def seeder(self) -> tuple[str, int] | None:
        return ("me", self.term) if self._live() else self.other

    def lease_until(self) -> float:
        return -math.inf if self.role_lost else self.until

    def hears_site(self) -> bool:
        return self.majority

    def _wake(self, *, changed: bool) -> None:
        if changed:
            event, self.seeder_changed = self.seeder_changed, trio.Event()
            event.set()
        event, self.lease_changed = self.lease_changed, trio.Event()
        event.set()

    def renew(self) -> None:
        """Late acks: the lease is back in the same term (no seeder change is reported)."""
        self.until = trio.current_time() + 1.0
        self._wake(changed=False)

    def step_down(self) -> None:
        self.role_lost = True
        self._wake(changed=True)

    def win(self, term: int) -> None:
        """This node wins a new term (it stood after its step-down)."""
        self.role_lost, self.term, self.until = False, term, trio.current_time() + 1.0
        self._wake(changed=True)

    def name(self, other: tuple[str, int]) -> None:
        self.other = other
        self._wake(changed=True)


async def _run_fence(site: _Site, act: Awaitable[None]) -> tuple[bool, float, bool]:
    """Start a fence over a fetch scope, let ``act`` drive the site, return (fired, when,
    fetch cancelled)."""
    fence = _Fence(GRACE)
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        await act
        with trio.move_on_after(100):
            while not fence.fired:  # noqa: ASYNC110 - mock clock: costs no real time
                await trio.sleep(0.01)
        fence.scope.cancel()
    return fence.fired, trio.current_time(), fetch.cancel_called


def _held(fence: _Fence) -> bool:
    return fence.hold.held  # a call: mypy would narrow the attribute across the awaits


def _fired(fence: _Fence) -> bool:
    return fence.fired


async def _nothing() -> None:
    await trio.lowlevel.checkpoint()


async def test_a_lease_that_runs_out_holds_then_fires_after_the_grace_when_cut_off(
    autojump_clock: trio.testing.MockClock,
) -> None:
    site = _Site(until=trio.current_time() + 3.0)
    start = trio.current_time()
    fired, when, cancelled = await _run_fence(site, _nothing())
    assert fired
    assert cancelled
    assert 3.0 + GRACE <= when - start < 3.1 + GRACE
    # Once at start, once at the deadline (held: the site names no one, nothing to look at):
    # no 0.2 s ticks.
    assert site.looks == 2


async def test_a_renewed_lease_moves_the_deadline_and_does_not_fire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    site = _Site(until=trio.current_time() + 1.0)
    fence = _Fence(GRACE)
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        for _ in range(10):  # renewed every 0.5 s for 5 s
            await trio.sleep(0.5)
            site.until = trio.current_time() + 1.0
        assert not fence.fired
        assert not _held(fence)
        assert not fetch.cancel_called
        assert site.looks <= 12  # a look per renewal seen, not 25 ticks
        fence.scope.cancel()


async def test_a_lease_back_in_the_same_term_releases_the_hold(
    autojump_clock: trio.testing.MockClock,
) -> None:
    site = _Site(until=trio.current_time() + 1.0)
    fence = _Fence(GRACE)
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        await trio.sleep(1.5)
        assert _held(fence)
        site.renew()
        await trio.sleep(0.1)
        assert not _held(fence)
        await trio.sleep(2.5)  # past the first lapse's grace (4.0): it was released, not fired
        assert _held(fence)  # the renewed lease ran out too (at 2.6): held again
        assert not fence.fired
        site.renew()
        await trio.sleep(0.1)
        assert not _held(fence)
        assert not fence.fired
        assert not fetch.cancel_called
        fence.scope.cancel()


async def test_a_step_down_holds_until_another_seeder_is_named(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A step-down (this node stood again, or voted for another) is no evidence that another
    # node fetches: held; the seeder the site then names stops the fetch.
    site = _Site(until=trio.current_time() + 60.0)

    async def step_down_then_name_another() -> None:
        await trio.sleep(1.0)
        site.step_down()
        await trio.sleep(2.0)
        assert site.lease_until() == -math.inf
        site.name(("other", 2))

    start = trio.current_time()
    fired, when, cancelled = await _run_fence(site, step_down_then_name_another())
    assert fired
    assert cancelled
    assert 3.0 <= when - start < 3.1  # when named, not at the step-down nor the bound


async def test_a_new_term_won_by_this_node_releases_the_hold_after_the_hook(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # At N = 100 the lapsed seeder often won the next term itself: the fetch goes on (no
    # bytes in flight lost), after the hook re-announced the object to the new catalogue.
    site = _Site(until=trio.current_time() + 1.0)
    calls: list[tuple[bool, tuple[str, int] | None]] = []

    async def on_new_term() -> None:
        calls.append((fence.hold.held, site.seeder()))

    fence = _Fence(GRACE, on_new_term=on_new_term)
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        await trio.sleep(1.5)
        site.step_down()
        await trio.sleep(0.5)
        assert _held(fence)
        site.win(5)
        await trio.sleep(0.1)
        assert not _held(fence)
        assert calls == [(True, ("me", 5))]  # once, while still held
        await trio.sleep(1.5)  # the new term's lease ran out (at 3.1): held again, not fired
        assert _held(fence)
        assert not fence.fired
        site.name(("other", 6))
        await trio.sleep(0.1)
        assert _fired(fence)
        assert fetch.cancel_called
        fence.scope.cancel()


async def test_another_seeder_named_while_held_fires_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    site = _Site(until=trio.current_time() + 1.0)

    async def name_another_later() -> None:
        await trio.sleep(1.5)  # held since 1.0
        site.name(("other", 2))

    start = trio.current_time()
    fired, when, cancelled = await _run_fence(site, name_another_later())
    assert fired
    assert cancelled
    assert 1.5 <= when - start < 1.6  # not at the grace's end (4.0)


async def test_a_seeder_that_hears_its_site_holds_past_the_bound_up_to_the_stuck_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # At N = 100 the lapsed seeder won the next term 17 s after the lapse, while it heard
    # its site all along: not cut off, so it holds (4 x the bound at most, the members'
    # own limit).
    site = _Site(until=trio.current_time() + 1.0)
    site.majority = True
    start = trio.current_time()
    fired, when, cancelled = await _run_fence(site, _nothing())
    assert fired
    assert cancelled
    assert 1.0 + STUCK_FACTOR * GRACE <= when - start < 1.1 + STUCK_FACTOR * GRACE


async def test_without_evidence_the_hold_outlasts_the_lease_until_the_bound(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The bound is site.fallback_timeout_s (15 s): a lease back in the same term 4 s after
    # it lapsed (a loaded site's late acks, seen at N = 100) releases the hold; no fence.
    site = _Site(until=trio.current_time() + 1.0)
    fence = _Fence(15.0)
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        await trio.sleep(5.0)  # lapsed at 1.0: held for 4 s, more than a lease
        assert _held(fence)
        assert not fence.fired
        site.renew()
        await trio.sleep(0.1)
        assert not _held(fence)
        assert not fence.fired
        assert not fetch.cancel_called
        fence.scope.cancel()
