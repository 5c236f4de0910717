"""The seeder-centred control plane (``_core``): rosters instead of member-to-member beacons."""

from __future__ import annotations

from frumitcache.site import Beacon, Lease, LeaseAck, SiteCore, Timings
from frumitcache.site._core import roster_version
from frumitcache.site._messages import Roster
from tests.site.sim import SimSite, member


def _formed(n: int, *, seed: int = 3) -> tuple[SimSite, str]:
    site = SimSite([member(i) for i in range(n)], seed=seed)
    site.run_until(12.0)
    (seeder,) = site.seeders()
    return site, seeder


def test_members_speak_only_to_the_seeder_once_it_is_elected() -> None:
    site, seeder = _formed(8)
    site.links.clear()
    site.run_until(40.0)
    between_members = {k: v for k, v in site.links.items() if seeder not in k}
    assert between_members == {}
    # ... and still every member knows every other one, with its address.
    for node in site.nodes.values():
        assert node.core is not None
        assert [m.node_id for m in node.core.members(site.now)][1:] == sorted(
            n for n in site.nodes if n != node.info.node_id
        )


def test_a_departed_member_leaves_every_roster() -> None:
    site, seeder = _formed(6)
    gone = next(n for n in site.nodes if n != seeder)
    site.crash(gone)
    site.run_until(site.now + 10.0)
    for node_id, node in site.nodes.items():
        if node.core is not None:
            assert gone not in [m.node_id for m in node.core.members(site.now)], node_id
    assert site.seeders() == [seeder]


def test_a_late_node_learns_the_site_from_the_roster() -> None:
    site, seeder = _formed(5)
    late = member(9)
    site.nodes["n9"] = type(site.nodes["n0"])(late, None)
    site.start_node("n9")
    site.run_until(site.now + 8.0)
    core = site.nodes["n9"].core
    assert core is not None
    assert core.seeder(site.now) is not None
    assert core.seeder(site.now)[0] == seeder  # type: ignore[index]
    assert len(core.members(site.now)) == 6
    assert core.roster_held != 0


def test_a_follower_shows_a_stray_where_the_seeder_is() -> None:
    """Static peer lists may be one-sided: a stray that knows only a follower must still find
    the seeder; the follower answers its beacon with itself and the seeder."""
    t = Timings()
    f = SiteCore(member(1), t, now=0.0)
    f.receive("n0", Beacon(member(0), 1, "n0", 2), 0.0)
    f.receive("n0", Lease(1, "n0", 1, roster=0), t.lease_s + 0.1)
    now = t.lease_s + 0.2
    assert f.seeder(now) == ("n0", 1)
    out = f.receive("n7", Beacon(member(7), 0, None, 1), now)
    assert len(out) == 1
    assert out[0].to == "n7"
    roster = out[0].msg
    assert isinstance(roster, Roster)
    assert [m.node_id for m in roster.members] == ["n1", "n0"]
    assert roster.version == 0  # not a roster to hold, only a pointer
    # A beacon of a member that already follows the same seeder gets no answer.
    assert f.receive("n8", Beacon(member(8), 1, "n0", 3), now) == []


def test_ack_with_a_stale_roster_version_gets_the_roster() -> None:
    t = Timings()
    s = SiteCore(member(0), t, now=0.0, solo=True)
    s.on_timer(0.0)
    assert s.is_seeder(0.0)
    s.receive("n1", Beacon(member(1), 0, None, 1), 0.1)
    out = s.on_timer(t.lease_s / 3 + 0.01)
    leases = [o for o in out if isinstance(o.msg, Lease)]
    assert [o.to for o in leases] == ["n1"]
    lease = leases[0].msg
    assert isinstance(lease, Lease)
    assert lease.roster == roster_version((member(0), member(1)))
    ack = LeaseAck(lease.term, "n0", lease.seq, "n1", True, 2, roster=0)
    sent = s.receive("n1", ack, t.lease_s / 3 + 0.02)
    rosters = [o.msg for o in sent if isinstance(o.msg, Roster)]
    assert len(rosters) == 1
    assert rosters[0].version == lease.roster
    # An ack naming the current version costs nothing more.
    ack = LeaseAck(lease.term, "n0", lease.seq, "n1", True, 2, roster=lease.roster)
    assert s.receive("n1", ack, t.lease_s / 3 + 0.03) == []


def test_a_roster_from_anyone_but_our_seeder_refreshes_nothing() -> None:
    t = Timings()
    f = SiteCore(member(1), t, now=0.0)
    f.receive("n2", Beacon(member(2), 0, None, 2), 0.0)
    forged = Roster(5, "n2", 77, (member(2), member(3)))
    f.receive("n2", forged, 3.9)
    # n3 is learnt (a pointer), but n2 was not refreshed by its own hearsay beyond its frame.
    assert f.roster_held == 0
    assert f.membership.info("n3") is not None


def test_roster_version_ignores_load_but_not_addresses() -> None:
    import dataclasses

    a, b = member(0), member(1)
    base = roster_version((a, b))
    assert roster_version((b, a)) == base
    assert roster_version((dataclasses.replace(a, load=3.5), b)) == base
    assert roster_version((dataclasses.replace(a, address="10.9.9.9"), b)) != base
    assert roster_version((a,)) != base
