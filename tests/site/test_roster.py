"""The seeder-centred control plane (``_core``): rosters instead of member-to-member beacons."""

from __future__ import annotations

from frumitcache.site import Beacon, Lease, LeaseAck, SiteCore, Timings
from frumitcache.site._messages import Roster, RosterDelta
from frumitcache.site._roster import roster_version
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


# --- deltas -------------------------------------------------------------------------------------


def _seeder_with(n: int) -> tuple[SiteCore, float]:
    """A seeder (n0) with members n1..n(n-1), one lease round done."""
    t = Timings()
    s = SiteCore(member(0), t, now=0.0, solo=True)
    s.on_timer(0.0)
    for i in range(1, n):
        s.receive(f"n{i}", Beacon(member(i), 0, None, 1), 0.1)
    return s, t.lease_s / 3 + 0.01


def _round(s: SiteCore, now: float) -> Lease:
    leases = [o.msg for o in s.on_timer(now) if isinstance(o.msg, Lease)]
    assert leases
    lease = leases[0]
    assert isinstance(lease, Lease)
    return lease


def _answer(s: SiteCore, lease: Lease, who: str, held: int, now: float) -> list[object]:
    ack = LeaseAck(lease.term, "n0", lease.seq, who, True, 2, roster=held)
    return [o.msg for o in s.receive(who, ack, now) if isinstance(o.msg, Roster | RosterDelta)]


def test_a_member_one_version_behind_gets_the_change_not_the_roster() -> None:
    s, now = _seeder_with(10)
    first = _round(s, now)
    s.receive("n10", Beacon(member(10), 0, None, 1), now + 0.1)  # one more member
    second = _round(s, now + 1.1)
    assert second.roster != first.roster
    (sent,) = _answer(s, second, "n3", first.roster, now + 1.2)
    assert isinstance(sent, RosterDelta)
    assert (sent.base, sent.version) == (first.roster, second.roster)
    assert [m.node_id for m in sent.added] == ["n10"]
    assert sent.removed == ()


def test_a_member_with_an_unknown_version_gets_the_whole_roster() -> None:
    s, now = _seeder_with(10)
    lease = _round(s, now)
    (sent,) = _answer(s, lease, "n3", 12345, now + 0.1)
    assert isinstance(sent, Roster)
    (sent,) = _answer(s, lease, "n4", 0, now + 0.1)  # holds none yet
    assert isinstance(sent, Roster)


def test_a_delta_that_did_not_take_is_followed_by_the_whole_roster() -> None:
    s, now = _seeder_with(10)
    first = _round(s, now)
    s.receive("n10", Beacon(member(10), 0, None, 1), now + 0.1)
    second = _round(s, now + 1.1)
    assert isinstance(_answer(s, second, "n3", first.roster, now + 1.2)[0], RosterDelta)
    # Its next ack still names the old version (the delta was lost, or it could not apply it).
    (again,) = _answer(s, second, "n3", first.roster, now + 2.2)
    assert isinstance(again, Roster)
    assert again.version == second.roster


def _follower(seeder_roster: Roster) -> tuple[SiteCore, float]:
    """n1 following n0 and holding ``seeder_roster``."""
    t = Timings()
    f = SiteCore(member(1), t, now=0.0)
    f.receive("n0", Beacon(member(0), 1, "n0", 2), 0.0)
    now = t.lease_s + 0.1
    f.receive("n0", Lease(1, "n0", 1, roster=seeder_roster.version), now)
    f.receive("n0", seeder_roster, now)
    assert f.roster_held == seeder_roster.version
    return f, now


def _roster(*ids: int) -> Roster:
    members = tuple(member(i) for i in ids)
    return Roster(1, "n0", roster_version(members), members)


def test_a_follower_applies_a_delta_from_the_version_it_holds() -> None:
    old, new = _roster(0, 1, 2, 3), _roster(0, 1, 3, 4)
    f, now = _follower(old)
    f.receive("n0", RosterDelta(1, "n0", old.version, new.version, (member(4),), ("n2",)), now)
    assert f.roster_held == new.version
    assert f.membership.info("n4") is not None


def test_a_follower_ignores_deltas_it_cannot_trust() -> None:
    old, new = _roster(0, 1, 2, 3), _roster(0, 1, 3, 4)
    f, now = _follower(old)
    change = ((member(4),), ("n2",))
    cases = {
        # from a version it does not hold
        "other base": RosterDelta(1, "n0", 999, new.version, *change),
        # whose result is not the roster the version names (a forged or garbled delta)
        "wrong result": RosterDelta(1, "n0", old.version, new.version, (member(5),), ("n2",)),
        # from a node that is not its seeder, or naming another seeder
        "not the seeder": RosterDelta(1, "n3", old.version, new.version, *change),
    }
    for name, delta in cases.items():
        sender = "n3" if name == "not the seeder" else "n0"
        f.receive(sender, delta, now)
        assert f.roster_held == old.version, name
    assert f.membership.info("n4") is None
    assert f.membership.info("n5") is None


def test_a_joiner_costs_the_formed_site_deltas_not_rosters() -> None:
    site, seeder = _formed(30)
    sent: list[object] = []
    original = site._send

    def spy(src: str, outgoing: list) -> None:  # type: ignore[type-arg]
        sent.extend(o.msg for o in outgoing if src == seeder)
        original(src, outgoing)

    site._send = spy  # type: ignore[method-assign]
    late = member(40)
    site.nodes["n40"] = type(site.nodes["n0"])(late, None)
    site.start_node("n40")
    site.run_until(site.now + 8.0)
    whole = [m for m in sent if isinstance(m, Roster) and m.version]
    deltas = [m for m in sent if isinstance(m, RosterDelta)]
    # The joiner gets the whole roster; the 29 others each get the change (one member).
    assert len(deltas) >= 29
    assert len(whole) <= 3
    for node in site.nodes.values():
        assert node.core is not None
        assert len(node.core.members(site.now)) == 31


def test_a_site_started_one_node_at_a_time_forms_while_its_roster_changes_every_round() -> None:
    """Nodes coming up one by one over 30 s (a rack powered on): the seeder's roster changes
    every round, so a member's held version is always one behind the lease's and leases
    refresh no one; the deltas themselves must keep every member alive (a delta that only
    added the newcomers let the others time out and be forgotten: 65-69 of 100 known)."""
    n, spread = 60, 30.0
    site = SimSite([member(0), member(1)], seed=5, delay=(0.001, 0.3))
    for i in range(2, n):
        site.run_until(spread * i / n)
        site.nodes[f"n{i}"] = type(site.nodes["n0"])(member(i), None)
        site.start_node(f"n{i}")
    site.run_until(spread + 10.0)
    (seeder,) = site.seeders()
    views = site.views()
    assert {view[0] if view else None for view in views.values()} == {seeder}
    for node_id, node in site.nodes.items():
        assert node.core is not None
        assert len(node.core.members(site.now)) == n, node_id
