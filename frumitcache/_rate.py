"""Pure rate arithmetic, shared by the uplink client, the peer HTTP port and the test origin:
a token bucket that says how long to wait, and a meter that says how fast bytes went. Neither
reads the clock; the caller passes ``now`` (seconds on any monotonic clock, e.g.
``trio.current_time()``)."""

from __future__ import annotations

from collections import deque


class TokenBucket:
    """A token bucket of ``rate`` bytes/s holding at most ``burst`` bytes.

    :meth:`take` always grants the bytes and answers how long the caller must wait before
    using them; the bucket goes into debt meanwhile. Concurrent takers therefore queue behind
    each other's debt and share the rate fairly, with no lock. ``rate == 0`` means unlimited.
    """

    __slots__ = ("_last", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float | None = None) -> None:
        if rate < 0:
            raise ValueError("rate must not be negative")
        self.rate = float(rate)
        # A tenth of a second of traffic (at least one typical read) smooths the flow without
        # letting a long-idle uplink fire a large burst.
        self.burst = float(burst) if burst is not None else max(self.rate / 10, 64 * 1024.0)
        if self.burst <= 0:
            raise ValueError("burst must be positive")
        self._tokens = self.burst
        self._last: float | None = None

    def take(self, n: int, now: float) -> float:
        """Spend ``n`` bytes at time ``now``; return the seconds to wait first (0 when allowed)."""
        if self.rate == 0:
            return 0.0
        if self._last is not None and now > self._last:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now
        self._tokens -= n
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate


class RateMeter:
    """Bytes per second over the last ``window`` completed seconds, kept in one-second bins."""

    __slots__ = ("_bins", "window")

    def __init__(self, window: int = 5) -> None:
        self.window = window
        self._bins: deque[list[float]] = deque()  # [second, bytes], oldest first

    def add(self, n: int, now: float) -> None:
        second = float(int(now))
        if self._bins and self._bins[-1][0] == second:
            self._bins[-1][1] += n
        else:
            self._bins.append([second, float(n)])
        self._trim(now)

    def rate(self, now: float) -> float:
        """Average bytes/s over the ``window`` whole seconds before the one ``now`` is in."""
        self._trim(now)
        current = int(now)
        return sum(n for second, n in self._bins if second < current) / self.window

    def _trim(self, now: float) -> None:
        oldest = int(now) - self.window
        while self._bins and self._bins[0][0] < oldest:
            self._bins.popleft()
