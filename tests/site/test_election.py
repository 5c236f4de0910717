"""The election machine with explicit times: small hand-made scenarios.

The randomized schedules are in ``test_sim.py``; these pin the individual rules.
"""

from __future__ import annotations

from frumitcache.site import Claim, Durable, Lease, LeaseAck, Role, SiteCore, Timings, Vote
from frumitcache.site._election import Outgoing
from frumitcache.site._evidence import Probe, Refused
from tests.site.sim import TIMINGS, SimSite, member


def test_a_one_node_site_elects_itself_at_once() -> None:
    core = SiteCore(member(0), TIMINGS, now=100.0, solo=True)
    core.on_timer(100.0)
    assert core.is_seeder(100.0)
    assert core.seeder(100.0) == ("n0", 1)
    # It renews alone and stays seeder.
    t = 100.0
    while t < 200.0:
        t = core.next_deadline()
        core.on_timer(t)
        assert core.is_seeder(t)


def test_a_lone_node_of_a_real_site_waits_before_electing_itself() -> None:
    core = SiteCore(member(0), TIMINGS, now=0.0)
    t = 0.0
    while t < TIMINGS.forget_after_s - 0.01:
        core.on_timer(t)
        assert not core.is_seeder(t)
        t = min(core.next_deadline(), TIMINGS.forget_after_s - 0.01)
    core.on_timer(TIMINGS.forget_after_s)
    assert core.is_seeder(TIMINGS.forget_after_s)


def test_the_preferred_node_is_elected() -> None:
    infos = [member(0), member(1, priority=1), member(2, ram=4 << 30), member(3, wired=False)]
    site = SimSite(infos, seed=1)
    site.run_until(10.0)
    assert site.seeders() == ["n1"]  # priority first
    site = SimSite([member(0), member(2, ram=4 << 30), member(3, wired=False)], seed=1)
    site.run_until(10.0)
    assert site.seeders() == ["n2"]  # then RAM
    site = SimSite([member(3, wired=False, ram=8 << 30), member(4)], seed=1)
    site.run_until(10.0)
    assert site.seeders() == ["n4"]  # a wired link before RAM


def test_failover_within_a_few_seconds_and_fencing_first() -> None:
    site = SimSite([member(i) for i in range(5)], seed=3)
    site.run_until(10.0)
    (old,) = site.seeders()
    old_core = site.nodes[old].core
    assert old_core is not None
    others = {n for n in site.nodes if n != old}
    # Cut the seeder off (cable pulled): it must lose its lease before anyone else wins one.
    site.partition([{old}, others])
    cut = site.now
    while old_core.is_seeder(site.now):
        site.run_until(site.now + 0.01)
    fenced = site.now - cut
    assert fenced <= TIMINGS.lease_s
    assert not set(site.seeders()) & others
    while not site.seeders():
        site.run_until(site.now + 0.01)
    elected = site.now - cut
    assert site.seeders()[0] in others
    assert elected <= TIMINGS.lease_s + 2 * TIMINGS.round_s
    # The isolated old seeder is a minority of one: it cannot elect itself back.
    site.run_until(cut + TIMINGS.forget_after_s - 1)
    assert not old_core.is_seeder(site.now)
    # Healing: it follows the new seeder.
    site.partition(None)
    site.run_until(site.now + 10)
    assert len(site.seeders()) == 1
    assert site.seeders()[0] in others
    assert old_core.seeder(site.now) == site.nodes[site.seeders()[0]].core.seeder(site.now)  # type: ignore[union-attr]


def test_a_minority_elects_only_after_forgetting_the_others() -> None:
    site = SimSite([member(i) for i in range(5)], seed=4)
    site.run_until(10.0)
    (seeder,) = site.seeders()
    minority = {n for n in site.nodes if n != seeder}
    minority = set(sorted(minority)[:2])
    site.partition([minority, set(site.nodes) - minority])
    cut = site.now
    site.run_until(cut + TIMINGS.forget_after_s - 1.5)
    assert set(site.seeders()) == {seeder}
    site.run_until(cut + TIMINGS.forget_after_s + 5)
    # Then the minority is a site of its own (documented: degrade, don't fail) ...
    assert len(site.seeders()) == 2
    assert seeder in site.seeders()
    # ... and after healing exactly one seeder remains.
    site.partition(None)
    site.run_until(site.now + 10)
    assert len(site.seeders()) == 1


def test_a_promised_follower_refuses_claims_and_foreign_leases() -> None:
    t = TIMINGS
    core = SiteCore(member(1), t, now=0.0)
    core.receive("n0", Lease(1, "n0", 1), t.lease_s)  # quiet: no ack, but no standing either
    out = core.receive("n0", Lease(1, "n0", 2), t.lease_s + 0.1)
    assert out == [Outgoing("n0", LeaseAck(1, "n0", 2, "n1", True, 1))]
    assert core.seeder(t.lease_s + 0.2) == ("n0", 1)
    # A better node claims a higher term while the promise lives: refused.
    out = core.receive("n9", Claim(7, "n9"), t.lease_s + 1.0)
    assert out == [Outgoing("n9", Vote(7, "n1", "n9", False, 1))]
    out = core.receive("n9", Lease(7, "n9", 1), t.lease_s + 1.0)
    assert out[0].msg == LeaseAck(7, "n9", 1, "n1", False, 1)
    assert core.seeder(t.lease_s + 1.0) == ("n0", 1)
    # Its renewal is late (rule 8 probes it), but no evidence came (a live seeder's peer port
    # accepts, a partitioned one times out): the promise holds to its end, evidence about
    # another seeder or term changes nothing.
    late = t.lease_s + 0.1 + t.lease_s / 3 + t.round_s + 0.5
    while core.next_deadline() <= late:
        core.on_timer(core.next_deadline())
    assert core.refused(Refused(Probe("n9", 7, "10.0.0.10", 3144, late)), late) is None
    assert core.refused(Refused(Probe("n0", 0, "10.0.0.1", 3144, late)), late) is None
    out = core.receive("n9", Claim(7, "n9"), late)
    assert out == [Outgoing("n9", Vote(7, "n1", "n9", False, 1))]
    assert core.seeder(late) == ("n0", 1)
    # Once the promise ran out the claim is granted.
    later = t.lease_s + 0.1 + t.lease_s
    out = core.receive("n9", Claim(7, "n9"), later)
    assert out == [Outgoing("n9", Vote(7, "n1", "n9", True, 1))]
    # One vote per term.
    out = core.receive("n8", Claim(7, "n8"), later)
    assert out[0].msg == Vote(7, "n1", "n8", False, 1)


def test_votes_survive_a_restart_and_promises_are_kept_by_a_quiet_start() -> None:
    t = TIMINGS
    durable = Durable(term=5, voted_term=5, voted_for="n2", electorate=3)
    core = SiteCore(member(1), t, now=100.0, durable=durable)
    # Quiet: no vote at all for lease_s after the start (a promise may still be running).
    out = core.receive("n3", Claim(6, "n3"), 100.0 + t.lease_s - 0.1)
    assert out[0].msg == Vote(6, "n1", "n3", False, 3)
    # After it: never twice in one term, and majorities count the remembered electorate.
    out = core.receive("n3", Claim(5, "n3"), 100.0 + t.lease_s)
    assert out[0].msg == Vote(5, "n1", "n3", False, 3)
    out = core.receive("n2", Claim(5, "n2"), 100.0 + t.lease_s)
    assert out[0].msg == Vote(5, "n1", "n2", True, 3)
    assert core.durable == Durable(5, 5, "n2", 3)


def test_healing_keeps_the_seeder_with_the_larger_backing_then_term() -> None:
    t = Timings()
    a = SiteCore(member(0), t, now=0.0, solo=True)
    a.on_timer(0.0)
    assert a.is_seeder(0.0)
    # Another seeder as well backed (one node), of a higher term: a steps down and follows it.
    out = a.receive("n5", Lease(4, "n5", 9, backing=1), 1.0)
    assert not a.is_seeder(1.0)
    assert a.election.role is Role.FOLLOWER
    assert out[0].msg == LeaseAck(4, "n5", 9, "n0", True, 1)
    # The other way round: it tells the lower seeder at once.
    b = SiteCore(member(1), t, now=0.0, solo=True)
    b.on_timer(0.0)
    b.election.term = 9
    out = b.receive("n5", Lease(4, "n5", 2, backing=1), 1.0)
    assert b.is_seeder(1.0)
    # (the lease names the version of b's roster: see test_core's roster tests)
    assert [(o.to, type(o.msg)) for o in out] == [("n5", Lease)]
    lease = out[0].msg
    assert isinstance(lease, Lease)
    assert (lease.term, lease.seeder, lease.seq) == (9, "n1", b.election._seq)
    assert lease.backing == 1
    # Backing first: a seeder of many beats one of few, whatever the terms.
    assert b.receive("n6", Lease(2, "n6", 7, backing=5), 2.0)[0].msg == LeaseAck(
        2, "n6", 7, "n1", True, 1
    )
    assert not b.is_seeder(2.0)


def test_a_seeder_whose_lease_lapsed_backs_nothing_when_seeders_meet() -> None:
    """Two cut off with the old seeder: its last granted round had all 5 of the site, then the
    cut left it 2 of an electorate of 5 (no majority, its lease lapsed). Its leases must not
    claim the 5 any more, and a live seeder backed by 3 (of a higher term) keeps the site."""
    site = SimSite([member(i) for i in range(5)], seed=3)
    site.run_until(10.0)
    (old,) = site.seeders()
    election = site.nodes[old].core.election  # type: ignore[union-attr]
    assert election.backing(site.now) == 5
    site.partition([{old, next(n for n in site.nodes if n != old)}, set()])
    site.run_until(10.0 + election.lease_s)
    assert election.role.value == "seeder"  # still trying to renew...
    assert not election.is_seeder(site.now)
    assert election.backing(site.now) == 0  # ...but backed by no one
    out = election.on_timer(election.next_deadline())
    leases = [o.msg for o in out if isinstance(o.msg, Lease)]
    assert leases
    assert {lease.backing for lease in leases} == {0}
    # A live seeder of the majority meets it: the lapsed one steps down and follows.
    now = site.now + 1.0
    election.receive(Lease(election.term + 1, "n9", 1, backing=3), now)
    assert election.role is Role.FOLLOWER
    assert election.seeder(now) == ("n9", election.term)


def test_next_deadline_is_always_in_the_future_after_a_timer() -> None:
    """The driver sleeps until ``next_deadline()`` after each ``on_timer(now)``: a deadline not
    strictly after ``now`` would make it spin. Timers also fire early (the driver wakes on
    every frame), so the check runs at arbitrary moments of a lossy 4-node site."""
    site = SimSite([member(i) for i in range(4)], seed=5, loss=0.2)
    checked = 0
    for step in range(1, 400):
        site.run_until(step * 0.1 + (step % 7) * 0.003)
        for node in site.nodes.values():
            assert node.core is not None
            node.core.on_timer(site.now)  # what it sends is lost, as the network may do
            assert node.core.next_deadline() > site.now
            checked += 1
    assert checked == 399 * 4
