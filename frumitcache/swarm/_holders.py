"""Holders that sent bad bytes: skipped for an exponential back-off, not for the process's life.

A holder that serves a chunk which does not hash to its digest usually has one rotten chunk
file (bit rot on an SD card), not a grudge. Banning it forever (issue 16, finding 8) sent every
later chunk it held back over the uplink. Instead each strike skips the holder for
``base_s · 2^(strikes-1)`` seconds, capped at ``max_s``; a clean transfer from it clears its
strikes. The client also tells the holder which chunk was bad (``POST /chunk/<hex>/verify``),
and the holder re-checks that chunk file and drops it, so the next ask finds it repaired.

Sans-IO: the time is an argument. Memory is bounded: entries whose back-off ended ``max_s``
ago are forgotten, and at most ``limit`` holders are tracked.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Strikes:
    count: int
    until: float


class HolderPenalties:
    """Per-address back-off after bad bytes (see the module docstring)."""

    def __init__(self, *, base_s: float = 5.0, max_s: float = 600.0, limit: int = 4096) -> None:
        self.base_s = base_s
        self.max_s = max_s
        self._limit = limit
        self._by_address: dict[str, _Strikes] = {}

    def penalise(self, address: str, now: float) -> float:
        """One strike against ``address``; returns until when it is skipped."""
        self._prune(now)
        s = self._by_address.get(address)
        count = 1 if s is None else s.count + 1
        until = now + min(self.max_s, self.base_s * float(2 ** min(count - 1, 30)))
        self._by_address[address] = _Strikes(count, until)
        return until

    def forgive(self, address: str) -> None:
        """A clean transfer from ``address``: its strikes are cleared."""
        self._by_address.pop(address, None)

    def is_penalised(self, address: str, now: float) -> bool:
        s = self._by_address.get(address)
        return s is not None and now < s.until

    def penalised(self, now: float) -> set[str]:
        """The addresses skipped at ``now``."""
        return {a for a, s in self._by_address.items() if now < s.until}

    def _prune(self, now: float) -> None:
        stale = [a for a, s in self._by_address.items() if now - s.until > self.max_s]
        for a in stale:
            del self._by_address[a]
        while len(self._by_address) >= self._limit:
            oldest = min(self._by_address, key=lambda a: self._by_address[a].until)
            del self._by_address[oldest]
