"""Evidence of death (election rule 8, ``site/_evidence.py``) with explicit times: a follower
whose seeder's renewal is late probes its peer port, and only a refused connect voids the
promise. The randomized schedules with crashes are in ``test_sim.py``."""

from __future__ import annotations

import dataclasses

from frumitcache.site import Claim, Lease, LeaseAck, SiteCore, Vote, rank_key
from frumitcache.site._election import Outgoing
from frumitcache.site._evidence import Probe, Refused
from frumitcache.site._messages import Roster
from frumitcache.site._roster import roster_version
from tests.site.sim import TIMINGS, SimSite, member

T = TIMINGS
STRETCHED = 3 * T.lease_s  # the longest lease a loaded seeder offers (9 s)
LATE = T.lease_s / 3 + T.round_s  # a renewal this late asks for a probe


def following(seeder: int = 0, term: int = 4, *, roster: bool = True) -> tuple[SiteCore, float]:
    """n1, past its start-up quiet, promised to ``seeder``'s stretched lease of ``term`` (and
    holding that seeder's roster unless ``roster`` is false). Returns it and the time of the
    last lease."""
    core = SiteCore(member(1), T, now=0.0)
    now = T.lease_s + 0.5
    members = (member(seeder), *(member(i) for i in range(3) if i != seeder))
    version = roster_version(members)
    if roster:
        core.receive(f"n{seeder}", Lease(term, f"n{seeder}", 1, duration=STRETCHED), now)
        core.receive(f"n{seeder}", Roster(term, f"n{seeder}", version, members), now)
    lease = Lease(term, f"n{seeder}", 2, roster=version, duration=STRETCHED)
    out = core.receive(f"n{seeder}", lease, now)
    assert next(o.msg for o in out if isinstance(o.msg, LeaseAck)).granted
    return core, now


def advance(core: SiteCore, until: float) -> float:
    """Run ``core``'s timers up to ``until``; returns ``until``."""
    while core.next_deadline() <= until:
        core.on_timer(core.next_deadline())
    return until


def test_a_late_renewal_asks_for_one_probe_of_the_seeders_own_address() -> None:
    core, last = following()
    advance(core, last + LATE - 0.01)
    assert core.take_probe(last + LATE - 0.01) is None  # not late yet
    now = advance(core, last + LATE)
    probe = core.take_probe(now)
    assert probe == Probe("n0", 4, member(0).address, member(0).peer_port, now)
    assert core.take_probe(now) is None  # once
    # Still late a renewal period later: probed again.
    now = advance(core, now + T.lease_s / 3)
    assert core.take_probe(now) == Probe("n0", 4, "10.0.0.1", 3144, now)


def test_without_the_seeders_roster_there_is_nothing_to_probe() -> None:
    # Where it listens is known only from its own roster of this term: a seeder restarted on
    # another port must not be probed at the old one.
    core, last = following(roster=False)
    now = advance(core, last + LATE + 1.0)
    assert core.take_probe(now) is None


def test_the_roster_answering_the_first_lease_names_where_to_probe() -> None:
    core = SiteCore(member(1), T, now=0.0)
    now = T.lease_s + 0.5
    members = (member(0), member(1), member(2))
    version = roster_version(members)
    core.receive("n0", Lease(4, "n0", 1, roster=version), now)  # acked, naming roster 0
    core.receive("n0", Roster(4, "n0", version, members), now + 0.01)  # the answer
    now = advance(core, now + LATE)
    assert core.take_probe(now) == Probe("n0", 4, "10.0.0.1", 3144, now)


def test_a_refused_probe_voids_the_promise_and_answers_the_refused_claim() -> None:
    core, last = following()
    now = advance(core, last + LATE)
    probe = core.take_probe(now)
    assert probe is not None
    # A candidate's claim arrives first: refused, the promise (9 s) still holds.
    out = core.receive("n2", Claim(5, "n2"), now + 0.01)
    assert out == [Outgoing("n2", Vote(5, "n1", "n2", False, 3))]
    assert core.seeder(now + 0.01) == ("n0", 4)
    # The reset comes back: the promise is void, the claim is answered again, granted.
    voided = core.refused(Refused(probe), now + 0.02)
    assert voided == [Outgoing("n2", Vote(5, "n1", "n2", True, 3))]
    assert core.seeder(now + 0.02) is None
    assert now + 0.02 < last + STRETCHED  # long before the promise would have ended
    assert core.durable.promised_s == 0.0  # a restart now need not wait out a stretched lease


def test_without_a_claim_the_best_follower_stands_at_once() -> None:
    core, last = following()  # n1 is the best of the others (n1, n2: ranked by id)
    now = advance(core, last + LATE)
    probe = core.take_probe(now)
    assert probe is not None
    out = core.refused(Refused(probe), now)
    assert out is not None
    claims = {o.to for o in out if isinstance(o.msg, Claim)}
    assert claims == {"n0", "n2"}  # to the whole electorate (n0 dead or not), now
    assert core.election.role.value == "candidate"


def test_evidence_older_than_a_lease_received_voids_nothing() -> None:
    core, last = following()
    now = advance(core, last + LATE)
    probe = core.take_probe(now)
    assert probe is not None
    # The seeder was only slow: its renewal arrives before the (misread) reset.
    lease = Lease(4, "n0", 3, roster=core.roster_held, duration=STRETCHED)
    core.receive("n0", lease, now + 0.1)
    assert core.refused(Refused(probe), now + 0.2) is None
    assert core.seeder(now + 0.2) == ("n0", 4)
    out = core.receive("n2", Claim(5, "n2"), now + 0.3)
    assert out == [Outgoing("n2", Vote(5, "n1", "n2", False, 3))]


def test_evidence_about_another_term_or_seeder_voids_nothing() -> None:
    core, last = following()
    now = advance(core, last + LATE)
    assert core.refused(Refused(Probe("n0", 3, "10.0.0.1", 3144, now)), now) is None
    assert core.refused(Refused(Probe("n2", 4, "10.0.0.3", 3144, now)), now) is None
    assert core.seeder(now) == ("n0", 4)


def test_a_lease_in_flight_from_a_dead_term_gets_no_promise_but_a_new_term_does() -> None:
    core, last = following()
    now = advance(core, last + LATE)
    probe = core.take_probe(now)
    assert probe is not None
    assert core.refused(Refused(probe), now) is not None
    # A frame the seeder sent before it died, delivered late: no promise, no ack.
    out = core.receive("n0", Lease(4, "n0", 3, duration=STRETCHED), now + 0.1)
    assert [o.msg.granted for o in out if isinstance(o.msg, LeaseAck)] == [False]
    assert core.seeder(now + 0.1) is None
    # The same node restarted and won a later term: followed again.
    out = core.receive("n0", Lease(9, "n0", 1), now + 5.0)
    assert next(o.msg for o in out if isinstance(o.msg, LeaseAck)).granted
    assert core.seeder(now + 5.0) == ("n0", 9)


def test_a_restarted_seeder_holds_no_lease_from_its_durable_state() -> None:
    site = SimSite([member(i) for i in range(3)], seed=2)
    site.run_until(10.0)
    (old,) = site.seeders()
    old_core = site.nodes[old].core
    assert old_core is not None
    term = old_core.election.term
    site.crash(old)
    site.start_node(old)  # at once, on the same address: within its old lease
    new = site.nodes[old].core
    assert new is not None
    assert not new.is_seeder(site.now)
    assert new.lease_until() == float("-inf")
    # It seeds again only by winning a later term, never on the old lease.
    while site.now < 30.0:
        site.run_until(site.now + 0.05)
        if new.is_seeder(site.now):
            assert new.election.term > term


def failover(
    *, evidence: bool, delay: tuple[float, float], seed: int
) -> tuple[float, float, SimSite]:
    """Crash the seeder of a 5-node site formed on a quick network and run with ``delay`` up
    to the crash: (when a new seeder's lease began, when the first promise to the dead one
    would have ended), both after the crash."""
    site = SimSite([member(i) for i in range(5)], seed=seed, evidence=evidence)
    site.run_until(10.0)
    site.delay = delay  # formed; now maybe slower
    site.run_until(30.0)
    (old,) = site.seeders()
    promised = [
        n.core.election.promise_until
        for i, n in site.nodes.items()
        if i != old and n.core is not None and n.core.election.promise_to == old
    ]
    crash = site.now
    site.crash(old)
    site.delay = (0.001, 0.05)  # the load is over (right after a herd): quick again
    while not site.seeders():
        site.run_until(site.now + 0.01)
        assert site.now < crash + 30.0
    return site.now - crash, min(promised) - crash, site


def test_a_crashed_seeder_is_replaced_before_any_promise_to_it_ends() -> None:
    for delay in [(0.001, 0.05), (0.7, 0.8)]:  # a quick LAN; acks late enough to stretch
        for seed in range(5):
            took, promised, site = failover(evidence=True, delay=delay, seed=seed)
            assert site.refusals > 0
            if delay[0] > 0.5:
                assert promised > TIMINGS.lease_s - TIMINGS.lease_s / 3  # stretched
            assert took < promised, (delay, seed, took, promised)
            # Without the evidence nobody votes before its promise ends.
            took, promised, site = failover(evidence=False, delay=delay, seed=seed)
            assert site.refusals == 0
            assert took >= promised, (delay, seed, took, promised)


def test_free_disk_a_few_mb_apart_does_not_reorder_the_candidates() -> None:
    # Each node ranks itself with its current free disk and the others with what they last
    # advertised: on one disk, figures taken seconds apart differ by MBs. Whole GiB only.
    a = dataclasses.replace(member(1), free_disk_bytes=(50 << 30) + (3 << 20))
    b = dataclasses.replace(member(2), free_disk_bytes=(50 << 30) + (9 << 20))
    assert rank_key(a) < rank_key(b)  # the node id decides
    c = dataclasses.replace(member(3), free_disk_bytes=51 << 30)
    assert rank_key(c) < rank_key(a)  # a GiB more still counts
