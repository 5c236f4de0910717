"""The token bucket as the peer HTTP port uses it (time is an argument)."""

from __future__ import annotations

from frumitcache._rate import TokenBucket


def test_unlimited_never_waits() -> None:
    b = TokenBucket(0)
    assert b.take(10**9, 0.0) == 0.0


def test_burst_then_rate() -> None:
    b = TokenBucket(1000, burst=500)
    assert b.take(500, 10.0) == 0.0
    assert b.take(1000, 10.0) == 1.0  # 1000 bytes owed at 1000 B/s
    # Waiting pays the debt back; after it the bucket refills up to the burst only.
    assert b.take(0, 11.0) == 0.0
    assert b.take(500, 100.0) == 0.0
    assert b.take(1, 100.0) > 0.0


def test_long_run_average_is_the_rate() -> None:
    b = TokenBucket(10_000, burst=1000)
    now = 0.0
    for _ in range(1000):
        now += b.take(1000, now)
    assert 99.0 <= now <= 100.0
