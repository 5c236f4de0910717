"""How long a seeder's next lease round runs (the stretch of :mod:`._election` rule 3): a pure
policy over the seeder's recent lease rounds, time passed in.

A round lasts ``lease_s`` while a majority acks fast. While a majority's acks come back late (a
loaded site: scheduling delay, not loss) the next round stretches to cover the delay of recent
rounds' majorities and of rounds still short of one, so that a later round can renew before
the lease runs out; never past ``STRETCH * lease_s`` (a follower refuses a longer one). A round
that ran out without a majority counts as late by its whole duration. The stretch shrinks back
once ``_DELAYS_KEPT`` fast rounds have pushed the late ones out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, MutableMapping
from dataclasses import dataclass, field

#: The longest lease a seeder offers (and a follower promises), in multiples of ``lease_s``.
STRETCH = 3.0

#: Lease rounds whose majority delay sets the next round's duration (about 2.7 s of rounds).
_DELAYS_KEPT = 8


@dataclass(slots=True)
class LeaseRound:
    """One lease round a seeder sent."""

    sent_at: float
    duration: float
    acks: dict[str, int] = field(default_factory=dict)  # voter -> its electorate size
    won_at: float | None = None  # when a majority had acked


class LeaseStretch:
    """The seeder's record of how late its rounds' majorities came, and the duration it offers
    next."""

    def __init__(self, lease_s: float, guard: float) -> None:
        self.lease_s = lease_s
        self.guard = guard
        self.max_lease_s = STRETCH * lease_s
        # How late the majority of recent rounds came (s).
        self._delays: deque[float] = deque(maxlen=_DELAYS_KEPT)

    def duration(self, now: float, rounds: Iterable[LeaseRound]) -> float:
        """The duration the next round offers, given the rounds still open."""
        pending = [now - r.sent_at for r in rounds if r.won_at is None]
        delay = max([0.0, *self._delays, *pending])
        need = 2 * delay + self.lease_s / 3 + self.guard
        return min(self.max_lease_s, max(self.lease_s, need))

    def won(self, rnd: LeaseRound, now: float) -> None:
        """``rnd`` has a majority now (records its delay the first time only)."""
        if rnd.won_at is None:
            rnd.won_at = now
            self._delays.append(now - rnd.sent_at)

    def expire(self, rounds: MutableMapping[int, LeaseRound], now: float) -> None:
        """Drop the rounds older than their lease (they can no longer extend it); one that
        never won a majority tells how late acks come (at least its whole duration)."""
        for seq in [s for s, r in rounds.items() if r.sent_at + r.duration <= now]:
            if rounds[seq].won_at is None:
                self._delays.append(rounds[seq].duration)
            del rounds[seq]
