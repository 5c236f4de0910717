"""The control plane of a 100-node site, simulated (see ``sim.py``): cost per node flat in N,
and the election still safe with loss, a seeder crash and partitions.

Bounded: a few hypothesis examples of 100 nodes (each ~1 simulated minute).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.site.sim import TIMINGS, SimSite, member

N = 100
_settings = settings(
    max_examples=int(os.environ.get("SITE_SIM_SCALE_EXAMPLES", "4")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _formed(site: SimSite) -> str:
    (seeder,) = site.seeders()
    views = site.views()
    assert all(v is not None and v[0] == seeder for v in views.values()), views
    return seeder


def _per_node_rate(n: int, seconds: float = 20.0) -> tuple[float, float]:
    """Messages per second sent + received by an average member and by the seeder, once the
    site of ``n`` nodes has formed."""
    site = SimSite([member(i) for i in range(n)], seed=n)
    site.run_until(15.0)
    seeder = _formed(site)
    site.sent.clear()
    site.received.clear()
    site.run_until(15.0 + seconds)
    traffic = {m: site.sent[m] + site.received[m] for m in site.nodes}
    members = [t for m, t in traffic.items() if m != seeder]
    return sum(members) / len(members) / seconds, traffic[seeder] / seconds


def test_member_cost_is_flat_in_the_site_size() -> None:
    small_member, _ = _per_node_rate(10)
    large_member, large_seeder = _per_node_rate(N)
    # Two frames per lease round (lease in, ack out), a beacon every BACKOFF intervals.
    assert large_member < 3.0
    assert large_member <= 1.1 * small_member
    # The seeder is the hub: about 2 (N - 1) frames per lease round.
    assert large_seeder < 2.5 * (N - 1)
    # Every member knows every other one (from the seeder's roster, no beacons between them).
    site = SimSite([member(i) for i in range(N)], seed=1)
    site.run_until(25.0)
    for node in site.nodes.values():
        assert node.core is not None
        assert len(node.core.members(site.now)) == N


@_settings
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    minority=st.integers(1, N // 2 - 1),
    split_at=st.floats(12.0, 20.0),
    split_s=st.floats(1.0, TIMINGS.forget_after_s - 8),
)
def test_hundred_nodes_seeder_crash_and_partition(
    seed: int, loss: float, minority: int, split_at: float, split_s: float
) -> None:
    site = SimSite([member(i, priority=i % 3) for i in range(N)], seed=seed, loss=loss)
    site.run_until(10.0)
    seeder = site.seeders()[0]
    site.crash(seeder)
    site.run_until(split_at)
    ids = sorted(site.nodes)
    site.partition([set(ids[:minority]), set(ids[minority:])])
    site.run_until(split_at + split_s)
    site.partition(None)
    site.loss = 0.0
    site.start_node(seeder)
    site.run_until(split_at + split_s + 20.0)
    assert site.double_wins() == {}
    assert site.overlaps == []
    _formed(site)


def _agreed(site: SimSite, *, members: bool = True) -> bool:
    """One seeder, named by every live node, and (``members``) every node knows every live
    one."""
    seeders = site.seeders()
    if len(seeders) != 1:
        return False
    live = len(site.up())
    for node in site.nodes.values():
        core = node.core
        if core is None:
            continue
        view = core.seeder(site.now)
        if view is None or view[0] != seeders[0]:
            return False
        if members and len(core.members(site.now)) != live:
            return False
    return True


def _run_until_agreed(
    site: SimSite, limit_s: float, step: float = 0.05, *, members: bool = True
) -> float | None:
    """Simulated seconds until :func:`_agreed` holds (``None`` if not within ``limit_s``)."""
    start = site.now
    while site.now < start + limit_s:
        site.run_until(site.now + step)
        if _agreed(site, members=members):
            return site.now - start
    return None


def _formation(n: int) -> tuple[float | None, float]:
    """Formation time of ``n`` nodes started together, and the messages an average node sent
    per second before anyone may stand (after the first second, which holds every node's
    first beacon to everyone)."""
    site = SimSite([member(i) for i in range(n)], seed=n)
    site.run_until(1.0)
    before = sum(site.sent.values())
    site.run_until(TIMINGS.lease_s)
    rate = (sum(site.sent.values()) - before) / n / (TIMINGS.lease_s - 1.0)
    formed = _run_until_agreed(site, 20.0)
    return (None if formed is None else formed + TIMINGS.lease_s), rate


def test_formation_is_quick_and_its_cost_flat_in_the_site_size() -> None:
    small_formed, small_rate = _formation(10)
    large_formed, large_rate = _formation(N)
    # Without a seeder, only the best candidate beacons to everyone each interval; the others
    # beacon to it (one frame) and to everyone once per backed-off gap.
    assert large_rate < 4.0, large_rate
    assert large_rate <= 1.5 * small_rate + 0.5, (small_rate, large_rate)
    # The start-up quiet (lease_s) and one claim and one lease round.
    assert small_formed is not None
    assert small_formed <= TIMINGS.lease_s + 2.0
    assert large_formed is not None
    assert large_formed <= TIMINGS.lease_s + 2.0


@pytest.mark.parametrize("loss", [0.0, 0.1])
def test_hundred_nodes_fail_over_within_a_lease_without_a_burst(loss: float) -> None:
    site = SimSite([member(i) for i in range(N)], seed=7)
    assert _run_until_agreed(site, 15.0) is not None
    site.run_until(site.now + 10.0)
    seeder = _formed(site)
    site.crash(seeder)
    site.sent.clear()
    site.loss = loss
    took = _run_until_agreed(site, 15.0, members=False)
    assert took is not None
    if loss == 0.0:
        # Every live node names the new seeder: promises run out lease_s - lease_s/3 ..
        # lease_s after the last renewal; then one claim round and one lease round.
        assert took <= TIMINGS.lease_s + 0.5, took
    new = site.seeders()[0]
    members = [site.sent[m] for m in site.up() if m != new]
    # No all-to-all burst while members have no seeder (with loss that lasts seconds for
    # some): a member sends about one frame a second (every node to every other: 2.5 to 4).
    assert sum(members) / len(members) / took < 1.5


@_settings
@given(
    seed=st.integers(0, 2**32 - 1),
    loss=st.sampled_from([0.0, 0.05, 0.2]),
    minority=st.integers(2, N // 2 - 1),
    split_at=st.floats(1.5, TIMINGS.lease_s - 0.1),
    split_s=st.floats(1.0, TIMINGS.forget_after_s - 8),
    crash_best=st.booleans(),
)
def test_hundred_nodes_form_safely_with_loss_and_an_early_partition(
    seed: int, loss: float, minority: int, split_at: float, split_s: float, crash_best: bool
) -> None:
    """A partition while the site is still forming (nodes have met, no seeder yet), possibly
    with the best candidate gone: the minority side, whose nodes heard only part of the site's
    backed-off beacons, must not elect; after healing, one seeder."""
    site = SimSite([member(i, priority=i % 3) for i in range(N)], seed=seed, loss=loss)
    ids = sorted(site.nodes)
    site.run_until(split_at)
    if crash_best:
        core = site.nodes[ids[0]].core
        assert core is not None
        site.crash(core.election.best_candidate(site.now))
    order = site.rng.sample(ids, len(ids))
    site.partition([set(order[:minority]), set(order[minority:])])
    site.run_until(split_at + split_s)
    site.partition(None)
    site.loss = 0.0
    assert _run_until_agreed(site, 20.0) is not None
    assert site.double_wins() == {}
    assert site.overlaps == []
