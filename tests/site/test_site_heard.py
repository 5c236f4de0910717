"""``SiteCore.hears_site``: has a node heard a majority of its electorate, or a seeder naming
itself, within half of ``forget_after_s``? A member that does is not cut off from a site that
can serve, and does not go to the origin alone because its seeder's lease lapsed in its view
(the agent's fallback clock, ``agent/_fallback.py``). Explicit times, beacons and leases as
the driver feeds them."""

from __future__ import annotations

from frumitcache.site import Beacon, Lease, SiteCore
from frumitcache.site._messages import Roster
from frumitcache.site._roster import roster_version
from tests.site.sim import TIMINGS, member

T = TIMINGS
WINDOW = T.forget_after_s / 2


def heard_from(core: SiteCore, nodes: range, now: float, *, electorate: int = 0) -> None:
    for i in nodes:
        beacon = Beacon(member(i), 0, None, electorate or len(nodes) + 1)
        core.receive(f"n{i}", beacon, now)


def test_a_node_that_hears_most_of_its_site_hears_a_majority() -> None:
    core = SiteCore(member(0), T, now=0.0)
    heard_from(core, range(1, 5), 1.0)  # a site of 5
    assert core.hears_site(1.0)


def test_a_node_cut_off_with_a_minority_stops_hearing_a_majority_after_the_window() -> None:
    # Hostile: a partition leaves n0 with n1 (2 of 5). The electorate still counts all 5
    # (forget_after_s), so 2 is not a majority once the others' last frames are older than
    # the window.
    core = SiteCore(member(0), T, now=0.0)
    heard_from(core, range(1, 5), 1.0)
    now = 1.0
    while now < 1.0 + WINDOW + 1.0:
        now += 1.0
        heard_from(core, range(1, 2), now, electorate=5)
        core.on_timer(now)
        if now < 1.0 + WINDOW:
            assert core.hears_site(now), now  # a lapse shorter than the window: still
    assert not core.hears_site(now)


def test_a_seeders_leases_count_its_roster_as_heard() -> None:
    # With a seeder, members hear each other through its leases (the roster), not beacons.
    core = SiteCore(member(1), T, now=0.0)
    now = T.lease_s + 0.5  # past the start-up quiet
    members = tuple(member(i) for i in range(5))
    version = roster_version(members)
    core.receive("n0", Lease(4, "n0", 1), now)
    core.receive("n0", Roster(4, "n0", version, members), now)
    core.receive("n0", Lease(4, "n0", 2, roster=version), now)
    assert core.hears_site(now)
    # Its leases stop (a loaded or lost seeder): for the window the site still counts whole,
    # then n1 hears only itself.
    assert core.hears_site(now + WINDOW - 0.1)
    assert not core.hears_site(now + WINDOW + 0.1)


def test_a_larger_electorate_reported_raises_the_bar() -> None:
    # Rule 1: a node counts majorities over at least what a member's beacon reported. Two of
    # three heard is a majority of 3, not of the 7 a member says the site has.
    core = SiteCore(member(0), T, now=0.0)
    heard_from(core, range(1, 3), 1.0)
    assert core.hears_site(1.0)
    core.receive("n1", Beacon(member(1), 0, None, 7), 1.5)
    assert not core.hears_site(1.5)


def test_a_member_whose_promise_ran_out_hears_the_seeders_beacons() -> None:
    # The N = 100 herd: pi63's promise ran out for 22 s while the others still followed the
    # seeder and beaconed to it alone; pi63 heard only the seeder's beacons (every 5 s).
    core = SiteCore(member(1), T, now=0.0)
    now = T.lease_s + 0.5
    members = tuple(member(i) for i in range(5))
    version = roster_version(members)
    core.receive("n0", Lease(4, "n0", 1), now)
    core.receive("n0", Roster(4, "n0", version, members), now)
    core.receive("n0", Lease(4, "n0", 2, roster=version), now)
    later = now + WINDOW + 5.0  # the roster's touches are stale, the promise long gone
    assert not core.hears_site(later)
    core.receive("n0", Beacon(member(0), 4, "n0", 5), later)
    assert core.hears_site(later)
    assert core.hears_site(later + WINDOW - 0.1)
    assert not core.hears_site(later + WINDOW + 0.1)


def test_a_seeder_of_an_older_term_or_one_naming_another_does_not_count() -> None:
    # Hostile: a deposed seeder still beaconing its old term (a healed partition), or a
    # member repeating which seeder it follows, is not a seeder heard.
    core = SiteCore(member(1), T, now=0.0)
    now = T.lease_s + 0.5
    core.receive("n0", Lease(4, "n0", 1), now)
    later = now + WINDOW + 5.0
    # (Of a site of 9: two members heard are no majority either.)
    core.receive("n2", Beacon(member(2), 3, "n2", 9), later)  # term 3 < 4
    core.receive("n3", Beacon(member(3), 4, "n0", 9), later)  # names another
    assert not core.hears_site(later)


def test_a_lapsed_seeder_still_beaconing_its_term_counts_until_a_newer_seeder() -> None:
    # The N = 100 herd: the seeder held its fetch 17 s with its lease lapsed (its beacons
    # named no seeder), then renewed in the same term; a member that heard only those
    # beacons fell back. The seeder it last followed, in that term or later, counts.
    core = SiteCore(member(1), T, now=0.0)
    now = T.lease_s + 0.5
    core.receive("n0", Beacon(member(0), 4, "n0", 9), now)  # of a site of 9
    core.receive("n0", Lease(4, "n0", 1), now)
    later = now + WINDOW + 5.0
    assert not core.hears_site(later)
    core.receive("n0", Beacon(member(0), 4, None, 9), later)  # lapsed: names no one
    assert core.hears_site(later)
    # Hostile: once this node follows a newer seeder, the old one's beacons do not count.
    core.receive("n2", Lease(6, "n2", 1), later + 1.0)
    quiet = later + 1.0 + WINDOW + 1.0
    core.receive("n0", Beacon(member(0), 4, None, 9), quiet)
    assert not core.hears_site(quiet)
