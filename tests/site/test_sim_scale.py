"""The control plane of a 100-node site, simulated (see ``sim.py``): cost per node flat in N,
and the election still safe with loss, a seeder crash and partitions.

Bounded: a few hypothesis examples of 100 nodes (each ~1 simulated minute).
"""

from __future__ import annotations

import os

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
