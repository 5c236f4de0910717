"""When a member gives up on its site and fetches the origin itself: a pure decision, time
passed in (neither reads the clock).

A site with one slow uplink is hurt most by members that go to the origin one by one: each
one costs the whole object over the uplink again. So a failed attempt to get an object
through the site is not a reason to leave it; only a site that cannot serve is:

- **silent**: no seeder named (none elected, or this node hears no lease), **the site not
  heard** (neither a majority of it nor a seeder's beacon naming itself:
  ``SiteNode.hears_site``) and no chunk of the object arriving, for
  ``site.fallback_timeout_s``: the site is unreachable (a minority side of a partition, a
  dead site);
- **stuck**: a seeder named (its leases reach this node: it lives) or the site heard (it has
  a seeder, or can elect one), but for :data:`STUCK_FACTOR` times the timeout the site made
  no progress: no chunk of the object arrived here, the site learned of no new chunk of it,
  and no new seeder term was named;
- **capped**: whatever progress the site shows, no chunk of the object arrived here for
  :data:`CAP_FACTOR` times the timeout (a site that flaps, or announces chunks this member
  cannot get, does not hold it forever).

Why the site's progress counts, not only chunks arriving here: at N = 100 on one core the
seeder's lease lapsed and its fence held the origin fetch for 37 s; it won a new term and
went on, and 66 of 99 members, with no chunk of their own for 60 s, left within the next 8 s
(uplink ratio 67 instead of 1). A new term and the chunks the seeder announces (a member's
plan learns them) show the site moving though nothing has reached this member yet.

A seeder that is slow to answer (a loaded one: a request timed out) while its leases still
arrive is alive, and a seeder change hands the member to the new seeder, which resumes the
object; neither starts the fallback clock on its own. Nor does a seeder's lease lapsing in
this member's view while the member still hears its site: at N = 100 on 2 cores a member's
promise ran out for 22-30 s while the seeder held and regained its lease in the same term
(the others, following the seeder, beacon to it alone: such a member hears only the seeder's
beacons), and that member's fetch of its own cost the whole object over the uplink again.
The same term named again after such a lapse is not progress (nothing moved). Chunks
arriving here restart every clock. What the member sees is sampled at each failed attempt
and each seeder change it follows, so progress counts from the sample that first shows it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Literal

#: With a seeder named, the member waits this many ``fallback_timeout_s`` for progress.
STUCK_FACTOR = 4.0
#: With no chunk arriving here, the member leaves after this many ``fallback_timeout_s``
#: whatever the site shows. Twice the stuck time: the seeder's fence holds its origin fetch
#: for up to STUCK_FACTOR times the timeout (``agent/_seeder.py``), so a site that resumes
#: after the longest hold still has one whole stuck time to bring a chunk here.
CAP_FACTOR = 2 * STUCK_FACTOR

Mode = Literal["never", "after-timeout", "always"]
Rule = Literal["silent", "stuck", "capped"]


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
    site_chunks: int = 0  # chunks of it the site was known to hold (the flight's count)
    #: The seeder ``(node, term)`` last named here: another one named is a new term.
    seeder: tuple[str, int] | None = None
    #: Last instant the site showed it can serve: a seeder named, the site heard, or
    #: chunks arrived.
    alive_at: float = field(init=False)
    #: Last instant chunks of the object arrived here.
    progress_at: float = field(init=False)
    #: Last instant the site moved: chunks arrived here, it learned of new chunks, or a new
    #: seeder term was named.
    site_progress_at: float = field(init=False)
    site_live: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self.alive_at = self.progress_at = self.site_progress_at = self.now

    def observe(
        self,
        now: float,
        *,
        seeder_named: bool,
        held: int,
        site_heard: bool = False,
        site_chunks: int = 0,
        seeder: tuple[str, int] | None = None,
    ) -> None:
        """What the member sees now: is a live seeder named (``seeder``, if known: which,
        in which term), does it hear its site, how many chunks are held here and known in
        the site. Counts only ever grow: a lower one is not progress."""
        self.now = max(self.now, now)
        self.site_live = seeder_named or site_heard
        if held > self.held:
            self.progress_at = self.site_progress_at = self.alive_at = self.now
        self.held = max(self.held, held)
        if site_chunks > self.site_chunks:
            self.site_progress_at = self.now
        self.site_chunks = max(self.site_chunks, site_chunks)
        if seeder is not None and seeder != self.seeder:
            # A seeder named after none was (the clock's first sight of one), or a new term.
            self.site_progress_at = self.now
            self.seeder = seeder
        if self.site_live:
            self.alive_at = self.now

    def fired(self) -> Rule | None:
        """Which rule says the site cannot serve now, if any."""
        if self.now - self.alive_at >= self.timeout_s:
            return "silent"
        if self.now - self.progress_at >= CAP_FACTOR * self.timeout_s:
            return "capped"
        if self.now - self.site_progress_at >= STUCK_FACTOR * self.timeout_s:
            return "stuck"
        return None

    def waited(self) -> float:
        """Seconds the site has got nowhere, by the clock that decides."""
        rule = self.fired()
        if rule == "capped":
            return self.now - self.progress_at
        if rule == "silent" or not self.site_live:
            return self.now - self.alive_at
        return self.now - self.site_progress_at

    def decide(self) -> Verdict:
        if self.mode == "always":
            return Verdict.ORIGIN
        if self.fired() is None:
            return Verdict.RETRY
        return Verdict.ORIGIN if self.mode == "after-timeout" else Verdict.FAIL
