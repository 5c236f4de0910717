"""A new seeder's leases reach the seeder it replaced while that one is quiet (``_core``).

Leases go to alive members (heard within ``member_timeout_s``). A seeder whose lease lapsed
beacons to its best candidate and to everyone only once per gap, so the node elected after
it often finds it quiet: without a lease it never learns of the new seeder, neither reports
what it fetched (the takeover waits for that) nor is fenced. Issue 14's 1.61 run: pi4, the
lapsed seeder, was the one node of 100 that never saw pi2's term 21."""

from __future__ import annotations

from frumitcache.site import Beacon, Claim, Lease, LeaseAck, SiteCore, Timings, Vote
from frumitcache.site._election import Outgoing
from tests.site.sim import member

T = Timings()
QUIET_FROM = T.lease_s + 0.1 + T.member_timeout_s


def _elected_after_n0(*, n0_found_dead: bool = False) -> tuple[SiteCore, list[Outgoing], float]:
    """n1 follows n0, n0 goes silent at 3.1 s (n2 goes on beaconing), n1 wins the next term:
    n1's core, what it sent once n0 was no longer alive (from 7.1 s), and the time."""
    core = SiteCore(member(1, priority=5), T, now=0.0)
    core.receive("n0", Beacon(member(0, priority=9), 1, "n0", 3), 0.0)
    core.receive("n2", Beacon(member(2), 1, "n0", 3), 0.0)
    now = T.lease_s + 0.1
    core.receive("n0", Lease(1, "n0", 1), now)
    assert core.seeder(now) == ("n0", 1)
    if n0_found_dead:
        core.election.watch.refused("n0", 1, now + 0.1)
    sent: list[Outgoing] = []
    while now < 12.0:
        now = round(now + 0.1, 3)
        core.receive("n2", Beacon(member(2), 1, None, 3), now)
        out = core.on_timer(now)
        for o in out:  # n2 votes for n1 and acks its leases
            if isinstance(o.msg, Claim) and o.to == "n2":
                out += core.receive("n2", Vote(o.msg.term, "n2", "n1", True, 3), now)
            if isinstance(o.msg, Lease) and o.to == "n2":
                ack = LeaseAck(o.msg.term, "n1", o.msg.seq, "n2", True, 3)
                out += core.receive("n2", ack, now)
        if now > QUIET_FROM:
            sent += out
    assert core.is_seeder(now)
    return core, sent, now


def test_the_quiet_previous_seeder_gets_the_new_seeders_leases() -> None:
    core, sent, now = _elected_after_n0()
    assert core.view(now).alive == ["n2"]
    assert core.view(now).quiet == ["n0"]  # heard 8.9 s ago: in the electorate, not alive
    to_n0 = [o.msg for o in sent if o.to == "n0" and isinstance(o.msg, Lease)]
    assert to_n0, "n0 never hears of its successor"
    assert {lease.seeder for lease in to_n0} == {"n1"}
    leases = [o for o in sent if isinstance(o.msg, Lease)]
    assert {o.to for o in leases} == {"n0", "n2"}


def test_a_previous_seeder_found_dead_gets_none() -> None:
    core, sent, now = _elected_after_n0(n0_found_dead=True)
    assert core.view(now).quiet == []
    assert not [o for o in sent if o.to == "n0" and isinstance(o.msg, Lease)]


def test_a_follower_is_told_of_no_quiet_members() -> None:
    core = SiteCore(member(1), T, now=0.0)
    core.receive("n0", Beacon(member(0), 1, "n0", 3), 0.0)
    assert core.view(10.0).quiet == ()  # only a seeder asks (its takeover's reports)
