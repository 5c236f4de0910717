"""After a failover the new seeder lets members' ``Have`` reports settle before it resumes the
origin. That wait looks at the catalogue only when the catalogue takes a report (an event),
never on a tick: under trio's mock clock it ends exactly ``quiet_s`` after the last change
that moved the measure, and a report that moved nothing does not extend it."""

from __future__ import annotations

import trio
import trio.testing

from frumitcache.agent._takeover import settle as _settle


class _Catalogue:
    """A chunk count that reports change; ``looks`` counts the waiter's measurements."""

    def __init__(self) -> None:
        self.chunks = 0
        self.looks = 0
        self._changed = trio.Event()

    def measure(self) -> int:
        self.looks += 1
        return self.chunks

    async def wait_change(self) -> None:
        await self._changed.wait()

    def report(self, chunks: int) -> None:
        self.chunks = chunks
        event, self._changed = self._changed, trio.Event()
        event.set()


async def _settle_while(catalogue: _Catalogue, reports: list[tuple[float, int]]) -> float:
    """Run ``_settle`` while ``reports`` (at time offsets) arrive; how long it waited."""
    start = trio.current_time()
    async with trio.open_nursery() as nursery:

        async def feed() -> None:
            for at, chunks in reports:
                await trio.sleep_until(start + at)
                catalogue.report(chunks)

        nursery.start_soon(feed)
        await _settle(catalogue.measure, catalogue.wait_change, quiet_s=0.5, limit_s=2.0)
        waited = trio.current_time() - start
        nursery.cancel_scope.cancel()
    return waited


async def test_no_reports_ends_after_the_quiet_period_with_one_look(
    autojump_clock: trio.testing.MockClock,
) -> None:
    catalogue = _Catalogue()
    assert await _settle_while(catalogue, []) == 0.5
    assert catalogue.looks == 1  # no 0.1 s ticks


async def test_a_report_wakes_it_at_once_and_restarts_the_quiet_period(
    autojump_clock: trio.testing.MockClock,
) -> None:
    catalogue = _Catalogue()
    # Off any tick grid: a poller would see the report late, and end late.
    waited = await _settle_while(catalogue, [(0.237, 3), (0.611, 5)])
    assert abs(waited - (0.611 + 0.5)) < 1e-9
    assert catalogue.looks == 3  # at the start and at each report


async def test_a_report_that_moves_nothing_does_not_extend_the_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    catalogue = _Catalogue()
    waited = await _settle_while(catalogue, [(0.2, 0), (0.45, 0)])  # resent, empty reports
    assert abs(waited - 0.5) < 1e-9
    assert catalogue.looks == 3


async def test_reports_that_never_stop_are_bounded_by_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    catalogue = _Catalogue()
    waited = await _settle_while(catalogue, [(0.3 * i, i) for i in range(1, 20)])
    assert abs(waited - 2.0) < 1e-9
