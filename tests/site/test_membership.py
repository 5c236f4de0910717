"""Membership as a pure machine: discovery, expiry, electorate horizon, goodbyes."""

from __future__ import annotations

import pytest

from frumitcache.site import Membership
from tests.site.sim import member

ME = member(0)


def make(now: float = 0.0) -> Membership:
    return Membership(ME, now=now, beacon_interval_s=1.0, member_timeout_s=4.0, forget_after_s=20.0)


def test_beacons_are_due_at_start_and_every_interval() -> None:
    m = make()
    assert m.next_deadline() == 0.0
    assert m.on_timer(0.0) is True
    assert m.on_timer(0.5) is False
    assert m.next_deadline() == 1.0
    assert m.on_timer(1.0) is True
    # A late timer does not cause a burst of catch-up beacons.
    assert m.on_timer(10.0) is True
    assert m.on_timer(10.0) is False
    assert m.next_deadline() == 11.0


def test_a_member_is_alive_then_gone_then_forgotten() -> None:
    m = make()
    assert m.heard(member(1), 1.0) is True
    assert m.heard(member(1), 2.0) is False
    assert [i.node_id for i in m.members(2.0)] == ["n0", "n1"]
    assert m.next_deadline() == 0.0  # first beacon still due
    m.on_timer(1.0)
    assert m.next_deadline() == 2.0
    m.on_timer(5.9)
    assert m.take_departures() == []
    m.on_timer(6.0)  # silent for member_timeout_s
    assert m.take_departures() == ["n1"]
    assert m.take_departures() == []
    assert [i.node_id for i in m.members(6.0)] == ["n0"]
    assert m.electorate(6.0) == {"n0", "n1"}  # still counts for majorities
    assert m.next_deadline() == pytest.approx(6.9)  # the next beacon; forgetting is later
    m.on_timer(21.9)
    assert m.electorate(21.9) == {"n0", "n1"}
    m.on_timer(22.0)  # silent for forget_after_s
    assert m.electorate(22.0) == {"n0"}
    assert m.info("n1") is None
    assert m.heard(member(1), 30.0) is True  # back: new again


def test_any_frame_keeps_a_member_alive_and_bye_forgets_at_once() -> None:
    m = make()
    m.heard(member(1), 0.0)
    m.heard(member(2), 0.0)
    m.touch("n1", 3.0)
    m.touch("unknown", 3.0)
    m.on_timer(4.0)
    assert m.take_departures() == ["n2"]
    assert m.is_alive("n1", 4.0)
    m.bye("n1")
    assert m.take_departures() == ["n1"]
    assert m.electorate(4.0) == {"n0", "n2"}
    assert m.alive_ids(4.0) == []


def test_updates_and_own_beacons() -> None:
    m = make()
    assert m.heard(ME, 0.0) is False  # our own beacon looped back
    assert m.members(0.0) == (ME,)
    changed = member(0, priority=5)
    m.update_self(changed)
    assert m.members(0.0) == (changed,)
    with pytest.raises(ValueError, match="id"):
        m.update_self(member(1))
    with pytest.raises(ValueError, match="beacon_interval_s"):
        Membership(ME, now=0, beacon_interval_s=5, member_timeout_s=4, forget_after_s=20)
