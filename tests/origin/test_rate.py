"""The pure rate arithmetic: time is passed in, so no test waits."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from frumitcache.origin import RateMeter, TokenBucket


def test_unlimited_never_waits() -> None:
    bucket = TokenBucket(0)
    assert bucket.take(10**9, 0.0) == 0.0


def test_burst_then_debt() -> None:
    bucket = TokenBucket(1000, burst=500)
    assert bucket.take(500, 10.0) == 0.0  # the burst is free
    assert bucket.take(250, 10.0) == pytest.approx(0.25)  # then the rate applies
    assert bucket.take(250, 10.0) == pytest.approx(0.5)  # debts queue up behind each other
    # After the wait it is even again; a full idle second refills the burst but not beyond.
    assert bucket.take(0, 10.5) == 0.0
    assert bucket.take(500, 12.0) == 0.0
    assert bucket.take(1, 12.0) == pytest.approx(0.001)


def test_time_going_backwards_does_not_refill() -> None:
    bucket = TokenBucket(100, burst=100)
    bucket.take(100, 5.0)
    assert bucket.take(100, 4.0) == pytest.approx(1.0)


@given(
    rate=st.integers(1, 10**7),
    takes=st.lists(st.tuples(st.integers(0, 10**6), st.floats(0, 2)), min_size=1, max_size=50),
)
def test_long_run_rate_never_exceeds_budget(rate: int, takes: list[tuple[int, float]]) -> None:
    """Whoever waits as told never moves more than burst + rate * elapsed."""
    bucket = TokenBucket(rate)
    now = 0.0
    moved = 0
    for n, gap in takes:
        now += gap
        now += bucket.take(n, now)  # wait as told, then the n bytes go
        moved += n
        assert moved <= bucket.burst + rate * now + 1e-6 * moved + 1


def test_rate_meter_counts_whole_seconds() -> None:
    meter = RateMeter(window=2)
    meter.add(1000, 10.2)
    meter.add(1000, 10.9)
    assert meter.rate(10.95) == 0  # the current second is not over yet
    assert meter.rate(11.0) == 1000  # 2000 bytes over a 2 s window
    meter.add(4000, 11.5)
    assert meter.rate(12.1) == 3000
    assert meter.rate(13.0) == 2000  # second 10 left the window
    assert meter.rate(20.0) == 0
