"""The per-host backoff's arithmetic (pure: time is an argument)."""

from __future__ import annotations

from frumitcache.origin._backoff import UpstreamBackoff

H = "registry.example:443"


def test_delays_double_up_to_the_cap_and_one_attempt_goes_through() -> None:
    b = UpstreamBackoff(1.0, 5.0)
    assert b.admit(H, 0.0)
    assert b.failed(H, 0.0) == 1.0
    assert not b.admit(H, 0.5)
    assert b.wait_s(H, 0.5) == 0.5
    assert b.admit(H, 1.0)  # the one probe after the delay ...
    assert not b.admit(H, 1.0)  # ... and nobody else while it runs
    assert b.failed(H, 1.0) == 2.0
    assert b.failed(H, 3.0) == 4.0
    assert b.failed(H, 7.0) == 5.0  # capped
    assert b.failures(H) == 4
    assert not b.admit(H, 11.9)
    assert b.admit(H, 12.0)
    b.reached(H)
    assert b.admit(H, 12.0)  # reachable: no limit
    assert b.admit(H, 12.0)
    assert b.failures(H) == 0


def test_a_released_attempt_lets_the_next_one_try() -> None:
    b = UpstreamBackoff(1.0, 60.0)
    b.failed(H, 0.0)
    assert b.admit(H, 2.0)
    b.released(H)  # cancelled: it said nothing about the host
    assert b.admit(H, 2.0)


def test_hosts_are_apart_and_memory_is_bounded() -> None:
    b = UpstreamBackoff(1.0, 60.0, max_hosts=3)
    b.failed("a:1", 0.0)
    assert b.admit("b:1", 0.0)
    for i in range(10):
        b.failed(f"h{i}:1", float(i))  # hostile: a flood of hosts
    assert len(b._hosts) == 3
    assert b.admit("a:1", 0.5)  # forgotten: tried again
