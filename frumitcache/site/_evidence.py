"""Evidence that a seeder's process is gone (rule 8 of :mod:`._election`): a pure watch over the
seeder a follower promised, time passed in.

A follower that acked a seeder's lease promised not to vote for anyone else until that lease
ends (up to ``STRETCH * lease_s`` under load). When the seeder's renewal is late (a renewal
period plus ``round_s`` without one), the follower asks its driver to *probe* the seeder's peer
port. An agent listens there, on the address it advertises, for as long as its control plane
runs; when its process is gone (SIGKILL, crash) its kernel answers a TCP connect with a reset.
"Refused" from that address therefore means no process of that node is left to act on the
lease, and the follower voids its promise to that seeder's term at once. Anything else (a
connect accepted: the process lives, maybe paused; a timeout: a partition, a host powered off,
a full accept backlog) is no evidence, and the promise runs out as before.

Neither side trusts a stale picture: a probe names the seeder and term it is about and when it
was sent, and evidence counts only if no lease of that seeder was accepted since (see
:meth:`DeathWatch.refused`); which address and port to probe is the caller's (:mod:`._core`
probes only a seeder whose roster this node holds in the version its last lease named).
"""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.site._messages import Claim


@dataclass(frozen=True, slots=True)
class Probe:
    """Ask the driver: does anything listen at ``address:port``, the peer port of ``seeder``,
    whose lease of ``term`` this node promised and whose renewal is late? ``sent_at`` is when
    the probe was asked for (the evidence is weighed against leases accepted since)."""

    seeder: str
    term: int
    address: str
    port: int
    sent_at: float


@dataclass(frozen=True, slots=True)
class Refused:
    """The driver's answer to a :class:`Probe`: the connect was refused (a reset), so no
    process listens there. Timeouts and accepted connects are not reported."""

    probe: Probe


class DeathWatch:
    """When a follower probes the seeder it promised, and which seeder terms it holds dead."""

    def __init__(self, renew_s: float, round_s: float) -> None:
        self.renew_s = renew_s  # the seeder renews every renew_s (lease_s / 3)
        self.round_s = round_s
        self._watched: tuple[str, int] | None = None
        self._renewed_at = float("-inf")
        self.probe_at = float("inf")
        self._due: tuple[str, int] | None = None
        self._dead: tuple[str, int] | None = None
        # A claim this node refused only because of its promise, answered again if the
        # evidence comes within the candidate's round.
        self._claim: tuple[Claim, float] | None = None

    def renewed(self, seeder: str, term: int, now: float) -> None:
        """A lease of ``seeder`` for ``term`` was accepted (promised) at ``now``."""
        self._watched = (seeder, term)
        self._renewed_at = now
        self.probe_at = now + self.renew_s + self.round_s
        self._due = None

    def on_timer(self, now: float, promised: bool) -> None:
        """Mark a probe due when the watched seeder's renewal is late while ``promised``;
        while it stays late, once per renewal period."""
        if not promised:
            self._watched, self._due, self.probe_at = None, None, float("inf")
        elif now >= self.probe_at:
            self._due = self._watched
            self.probe_at = now + self.renew_s

    def take_due(self) -> tuple[str, int] | None:
        """The ``(seeder, term)`` to probe now, once."""
        due, self._due = self._due, None
        return due

    def refused(self, seeder: str, term: int, sent_at: float) -> bool:
        """A probe sent at ``sent_at`` was refused: True when it voids the promise (it is about
        the seeder term watched and no lease of it was accepted after the probe went out)."""
        if self._watched != (seeder, term) or self._renewed_at >= sent_at:
            return False
        self._dead = (seeder, term)
        self._watched, self._due, self.probe_at = None, None, float("inf")
        return True

    def is_dead(self, seeder: str, term: int) -> bool:
        """A lease of ``seeder`` at or below a term it was found dead in (a frame still in
        flight) gets no promise."""
        return self._dead is not None and self._dead[0] == seeder and term <= self._dead[1]

    def found_dead(self, node: str) -> bool:
        """Was ``node`` found dead (in the last seeder term this node found dead)?"""
        return self._dead is not None and self._dead[0] == node

    def claim_refused(self, claim: Claim, now: float) -> None:
        self._claim = (claim, now)

    def take_claim(self, now: float) -> Claim | None:
        """The claim refused for the promise within the last round, if any (once)."""
        held, self._claim = self._claim, None
        if held is None or now >= held[1] + self.round_s:
            return None
        return held[0]
