"""A token bucket (sans-IO: the caller passes the time) for the peer HTTP upload rate.

libtorrent limits its own peers (``swarm.upload_rate``); the peer HTTP server shares the same
budget through this bucket so that a small-chunk storm cannot saturate a Pi's port either.
"""

from __future__ import annotations


class TokenBucket:
    """``rate`` bytes per second with bursts up to ``burst`` bytes; rate 0 means unlimited."""

    def __init__(self, rate: int, *, burst: int | None = None) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(rate // 4, 64 * 1024)
        self._tokens = float(self.burst)
        self._stamp: float | None = None  # the first take() starts the clock

    def take(self, amount: int, now: float) -> float:
        """Spend ``amount`` bytes; returns how long to wait before sending them (seconds)."""
        if self.rate <= 0:
            return 0.0
        if self._stamp is not None:
            self._tokens = min(float(self.burst), self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        self._tokens -= amount
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate
