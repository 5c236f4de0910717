"""When a member gives up on its site and fetches the origin itself: a pure decision, time
passed in (neither reads the clock).

A site with one slow uplink is hurt most by members that go to the origin one by one: each
one costs the whole object over the uplink again. So a failed attempt to get an object
through the site is not a reason to leave it; only a site that cannot serve is:

- **no seeder named** (none elected, or this node hears no lease), **the site not heard**
  (neither a majority of it nor a seeder's beacon naming itself: ``SiteNode.hears_site``)
  and no chunk of the object arriving, for ``site.fallback_timeout_s``: the site is
  unreachable (a minority side of a partition, a dead site);
- a seeder named (its leases reach this node: it lives) or the site heard (it has a seeder,
  or can elect one), but for :data:`STUCK_FACTOR` times the timeout no chunk of the object
  arrived here: it answers, yet nothing comes.

A seeder that is slow to answer (a loaded one: a request timed out) while its leases still
arrive is alive, and a seeder change hands the member to the new seeder, which resumes the
object; neither starts the fallback clock on its own. Nor does a seeder's lease lapsing in
this member's view while the member still hears its site: at N = 100 on 2 cores a member's
promise ran out for 22-30 s while the seeder held and regained its lease in the same term
(the others, following the seeder, beacon to it alone: such a member hears only the seeder's
beacons), and that member's fetch of its own cost the whole object over the uplink again.
Chunks arriving restart both clocks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

#: With a seeder named, the member waits this many ``fallback_timeout_s`` for a chunk.
STUCK_FACTOR = 4.0

Mode = Literal["never", "after-timeout", "always"]


class Verdict(enum.Enum):
    RETRY = "retry"  # ask the site again
    ORIGIN = "origin"  # fetch the origin directly
    FAIL = "fail"  # the site cannot serve and ``site.fallback = never``


@dataclass(slots=True)
class FallbackClock:
    """The fallback clock of one fetch, started at its first failed attempt (``now``).

    Feed it what the member sees at each failed attempt (:meth:`observe`), then ask
    :meth:`decide`."""

    mode: Mode
    timeout_s: float
    now: float
    held: int = 0  # chunks of the object held here when last observed
    #: Last instant the site showed it can serve: a seeder named, the site heard, or
    #: chunks arrived.
    alive_at: float = field(init=False)
    #: Last instant chunks of the object arrived here.
    progress_at: float = field(init=False)
    site_live: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.alive_at = self.progress_at = self.now

    def observe(
        self, now: float, *, seeder_named: bool, held: int, site_heard: bool = False
    ) -> None:
        """What the member sees now: is a live seeder named, does it hear its
        site, how many chunks are held."""
        self.now = max(self.now, now)
        self.site_live = seeder_named or site_heard
        if held > self.held:
            self.progress_at = self.now
            self.alive_at = self.now
        self.held = max(self.held, held)
        if self.site_live:
            self.alive_at = self.now

    def waited(self) -> float:
        """Seconds the site has got nowhere, by the clock that decides."""
        if self.site_live:
            return self.now - self.progress_at
        return self.now - self.alive_at

    def decide(self) -> Verdict:
        if self.mode == "always":
            return Verdict.ORIGIN
        silent = self.now - self.alive_at >= self.timeout_s
        stuck = self.now - self.progress_at >= STUCK_FACTOR * self.timeout_s
        if not (silent or stuck):
            return Verdict.RETRY
        return Verdict.ORIGIN if self.mode == "after-timeout" else Verdict.FAIL
