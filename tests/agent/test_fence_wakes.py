"""The seeder's fence waits on events, not a polling loop: it wakes when the site says the
seeder changed and when the lease it last saw runs out; a renewed lease only moves that
deadline. The site is faked (pure timing logic); the real fence runs under trio's mock clock."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

import trio
import trio.testing

from frumitcache.agent._seeder import _Fence
from frumitcache.agent._sitelink import SiteLink


class _Site:
    """A seeder whose lease runs to ``until`` (trio time); ``looks`` counts the fence's checks."""

    def __init__(self, until: float) -> None:
        self.until = until
        self.role_lost = False
        self.looks = 0
        self.seeder_changed = trio.Event()

    def is_seeder(self) -> bool:
        self.looks += 1
        return not self.role_lost and trio.current_time() < self.until

    def lease_until(self) -> float:
        return self.until

    def step_down(self) -> None:
        self.role_lost = True
        event, self.seeder_changed = self.seeder_changed, trio.Event()
        event.set()


async def _run_fence(site: _Site, act: Awaitable[None]) -> tuple[bool, float, bool]:
    """Start a fence over a fetch scope, let ``act`` drive the site, return (fired, when,
    fetch cancelled)."""
    fence = _Fence()
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        await act
        with trio.move_on_after(100):
            while not fence.fired:  # noqa: ASYNC110 - mock clock: costs no real time
                await trio.sleep(0.01)
        fence.scope.cancel()
    return fence.fired, trio.current_time(), fetch.cancel_called


async def _nothing() -> None:
    await trio.lowlevel.checkpoint()


async def test_a_lease_that_runs_out_fires_at_its_deadline_without_polling(
    autojump_clock: trio.testing.MockClock,
) -> None:
    site = _Site(until=trio.current_time() + 3.0)
    start = trio.current_time()
    fired, when, cancelled = await _run_fence(site, _nothing())
    assert fired
    assert cancelled
    assert 3.0 <= when - start < 3.1
    assert site.looks == 2  # once at start, once at the deadline: no 0.2 s ticks


async def test_a_renewed_lease_moves_the_deadline_and_does_not_fire(
    autojump_clock: trio.testing.MockClock,
) -> None:
    site = _Site(until=trio.current_time() + 1.0)
    fence = _Fence()
    fetch = trio.CancelScope()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(fence.run, cast("SiteLink", site), fetch)
        for _ in range(10):  # renewed every 0.5 s for 5 s
            await trio.sleep(0.5)
            site.until = trio.current_time() + 1.0
        assert not fence.fired
        assert not fetch.cancel_called
        assert site.looks <= 12  # a look per renewal seen, not 25 ticks
        fence.scope.cancel()


async def test_a_step_down_fires_at_once(autojump_clock: trio.testing.MockClock) -> None:
    site = _Site(until=trio.current_time() + 60.0)

    async def step_down_later() -> None:
        await trio.sleep(1.0)
        site.step_down()

    start = trio.current_time()
    fired, when, cancelled = await _run_fence(site, step_down_later())
    assert fired
    assert cancelled
    assert 1.0 <= when - start < 1.1  # the seeder-changed event, not the 60 s lease
