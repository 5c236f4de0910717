"""A lease that stretches while acks come back late (a loaded site), with explicit times and in
the simulated site: the seeder is not deposed by scheduling delay, and election safety holds
(at most one live lease at an instant, one winner per term)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from frumitcache.site import Claim, Durable, Lease, LeaseAck, SiteCore, Vote
from frumitcache.site._election import Election, Outgoing
from frumitcache.site._membership import Membership
from frumitcache.site._stretch import STRETCH
from tests.site.sim import TIMINGS, SimSite, member

LEASE = TIMINGS.lease_s


def _alive(election: Election, now: float) -> None:
    """n1 and n2 heard from (the driver's SiteCore touches a member on every frame)."""
    for node in ("n1", "n2"):
        election._m.touch(node, now)


def _seeder_of_three(now: float) -> Election:
    """n0, just elected by n1's vote in a site of three (n1, n2 known)."""
    membership = Membership(
        member(0),
        now=0.0,
        beacon_interval_s=TIMINGS.beacon_interval_s,
        member_timeout_s=TIMINGS.member_timeout_s,
        forget_after_s=TIMINGS.forget_after_s,
    )
    for i in (1, 2):
        membership.heard(member(i), now)
    election = Election(membership, now=0.0, lease_s=LEASE, round_s=TIMINGS.round_s)
    election.on_timer(now)  # stands (quiet over, heard others)
    election.receive(Vote(election.term, "n1", "n0", True, 3), now)  # wins, first round out
    election.receive(LeaseAck(election.term, "n0", 1, "n1", True, 3), now)
    assert election.is_seeder(now)
    return election


def _lease_of(out: list[Outgoing]) -> Lease:
    leases = [o.msg for o in out if isinstance(o.msg, Lease)]
    assert leases
    return leases[0]


def test_the_lease_stretches_while_acks_come_late_and_shrinks_back() -> None:
    t = 10.0
    seeder = _seeder_of_three(t)
    assert seeder.lease_duration(t) == LEASE  # fast acks so far: the plain lease
    # A site getting loaded: each round's majority ack comes 0.25 s later than the last, up
    # to 2.5 s (later than the 3 s lease minus a renewal allows). (A sudden jump can cost the
    # one round sent before the delay showed: the seeder's hold covers that.)
    pending: list[tuple[float, Lease]] = []
    delay = 0.0
    for _ in range(30):
        t = seeder.next_deadline()
        _alive(seeder, t)
        for at, lease in [p for p in pending if p[0] <= t]:
            seeder.receive(LeaseAck(lease.term, "n0", lease.seq, "n1", True, 3), at)
            pending.remove((at, lease))
        out = seeder.on_timer(t)
        if any(isinstance(o.msg, Lease) for o in out):
            delay = min(2.5, delay + 0.25)
            pending.append((t + delay, _lease_of(out)))
        assert seeder.is_seeder(t), t  # never deposed by its own slowness
    stretched = seeder.lease_duration(t)
    assert LEASE < stretched <= STRETCH * LEASE
    # Acks fast again (the late ones still arrive): back to the plain lease within a few
    # rounds.
    for _ in range(16):
        t = seeder.next_deadline()
        _alive(seeder, t)
        for at, lease in [p for p in pending if p[0] <= t]:
            seeder.receive(LeaseAck(lease.term, "n0", lease.seq, "n1", True, 3), at)
            pending.remove((at, lease))
        out = seeder.on_timer(t)
        if any(isinstance(o.msg, Lease) for o in out):
            lease = _lease_of(out)
            seeder.receive(LeaseAck(lease.term, "n0", lease.seq, "n1", True, 3), t + 0.01)
        assert seeder.is_seeder(t), t
    assert seeder.lease_duration(t) == LEASE


def test_the_stretch_is_bounded() -> None:
    t = 10.0
    seeder = _seeder_of_three(t)
    # No ack at all for a long while: the duration offered never passes STRETCH leases.
    for _ in range(40):
        t = seeder.next_deadline()
        _alive(seeder, t)
        out = seeder.on_timer(t)
        for o in out:
            if isinstance(o.msg, Lease):
                assert o.msg.duration <= STRETCH * LEASE
    assert seeder.lease_duration(t) == STRETCH * LEASE


def _follower(now: float = 0.0, durable: Durable | None = None) -> SiteCore:
    core = SiteCore(member(1), TIMINGS, now=now, durable=durable)
    core.membership.heard(member(0), now)
    core.membership.heard(member(2), now)
    return core


def test_a_follower_promises_the_stretched_duration_and_never_less() -> None:
    core = _follower()
    t = LEASE + 1.0  # start-up quiet over
    out = core.receive("n0", Lease(1, "n0", 1, duration=2 * LEASE), t)
    assert [o.msg.granted for o in out if isinstance(o.msg, LeaseAck)] == [True]
    assert core.election.promise_until == t + 2 * LEASE
    # A later plain round does not shorten the promise the stretched round stands on.
    core.receive("n0", Lease(1, "n0", 2), t + 1.0)
    assert core.election.promise_until == t + 2 * LEASE
    # Another candidate is refused for the whole stretched promise.
    late = t + 2 * LEASE - 0.1
    votes = [o.msg for o in core.receive("n2", Claim(2, "n2"), late) if isinstance(o.msg, Vote)]
    assert [v.granted for v in votes] == [False]
    # The durable state says a stretched promise may be running (rule 4).
    assert core.durable.promised_s == STRETCH * LEASE


def test_a_follower_refuses_a_lease_longer_than_it_may_promise() -> None:
    # Hostile or misconfigured (a key holder): no promise, no granted ack.
    for duration in (STRETCH * LEASE + 0.5, float("inf"), float("nan"), -1.0):
        core = _follower()
        t = LEASE + 1.0
        out = core.receive("n0", Lease(1, "n0", 1, duration=duration), t)
        assert [o.msg.granted for o in out if isinstance(o.msg, LeaseAck)] == [False]
        assert core.seeder(t) is None


def test_a_restart_after_a_stretched_promise_stays_quiet_that_long() -> None:
    core = _follower()
    t = LEASE + 1.0
    core.receive("n0", Lease(1, "n0", 1, duration=STRETCH * LEASE), t)
    durable = core.durable
    # Crash and restart at once: it must not ack another seeder while the promise may run.
    restarted = _follower(t + 0.1, durable)
    assert restarted.election.quiet_until == t + 0.1 + STRETCH * LEASE
    # A damaged state file cannot silence it for good.
    broken = _follower(0.0, Durable(promised_s=float("inf")))
    assert broken.election.quiet_until == STRETCH * LEASE


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=False
)
@given(
    n=st.integers(3, 7),
    seed=st.integers(0, 2**32 - 1),
    delay_max=st.sampled_from([1.0, 1.5, 2.0]),
    crash=st.one_of(st.none(), st.tuples(st.floats(12.0, 40.0), st.floats(0.1, 12.0))),
    loss=st.sampled_from([0.0, 0.1]),
)
def test_a_slow_network_stretches_leases_safely(
    n: int,
    seed: int,
    delay_max: float,
    crash: tuple[float, float] | None,
    loss: float,
) -> None:
    """A site formed on a fast network, then slowed down (messages delayed up to
    ``delay_max`` each way: a majority's acks later than a plain lease allows), then fast
    again. Never two live leases at one instant, never two winners of one term; without a
    crash the seeder keeps its lease throughout; with one (the seeder crashes and restarts
    after ``crash[1]`` s, quiet as long as its stretched promises may run) the site agrees
    on one seeder once fast again."""
    site = SimSite([member(i) for i in range(n)], seed=seed)
    site.run_until(10.0)
    assert len(site.seeders()) == 1
    first = site.seeder_history[-1][1:]
    site.delay, site.loss = (0.2, delay_max), loss
    stretched = 0.0
    victim: str | None = None
    t = 10.0
    while t < 50.0:
        t += 0.5
        site.run_until(t)
        for node_id in site.seeders():
            core = site.nodes[node_id].core
            assert core is not None
            stretched = max(stretched, core.election.lease_duration(t))
        if crash is not None and victim is None and t >= crash[0] and site.seeders():
            victim = site.seeders()[0]
            site.crash(victim)
        restart = victim is not None and crash is not None and t >= crash[0] + crash[1]
        if restart and victim not in site.up():
            assert victim is not None
            site.start_node(victim)
    site.delay, site.loss = (0.001, 0.05), 0.0
    site.run_until(110.0)
    assert site.overlaps == [], site.overlaps[:3]
    assert site.double_wins() == {}
    assert len(site.seeders()) == 1, site.views()
    if crash is None and loss == 0.0:
        assert stretched > LEASE  # the slow phase did stretch it
        assert all(h[1:] == first for h in site.seeder_history), site.seeder_history[:5]


def test_a_healing_reply_offers_its_rounds_stretched_duration() -> None:
    """The reply that tells a lower seeder to step down names the current round: an ack to it
    counts for that round, so it must ask for that round's duration. Found by the simulation
    (a reply of ``lease_s`` acked into a 9 s round held a lease 3 s past the acker's promise,
    and the acker, whose promise ran out, won a later term against it)."""
    t = 10.0
    seeder = _seeder_of_three(t)
    for _ in range(40):  # no acks: the rounds stretch to the bound
        t = seeder.next_deadline()
        _alive(seeder, t)
        seeder.on_timer(t)
    seeder.receive(LeaseAck(seeder.term, "n0", seeder._seq, "n1", True, 3), t)
    assert seeder.is_seeder(t)
    stretched = seeder.lease_duration(t)
    assert stretched > LEASE
    out = seeder.receive(Lease(1, "n9", 1, backing=1), t + 0.01)  # a lower seeder heals in
    reply = _lease_of(out)
    assert reply.seq == seeder._seq
    assert reply.duration == seeder._rounds[reply.seq].duration == stretched
    # The lower seeder follows and promises that long, so its ack may extend the lease.
    lower = SiteCore(member(9), TIMINGS, now=0.0, solo=True)
    lower.on_timer(0.0)
    ack = lower.receive("n0", reply, t + 0.02)
    assert [type(o.msg) for o in ack] == [LeaseAck]
    assert lower.election.promise_until == t + 0.02 + stretched
