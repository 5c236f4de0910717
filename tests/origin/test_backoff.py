"""The per-host backoff's arithmetic (pure: time is an argument), a registry's "not now"
(429, 503) and its ``Retry-After`` among it."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from frumitcache.errors import OriginStatusError, OriginUnreachableError
from frumitcache.origin._backoff import UpstreamBackoff, retry_after_s

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


def test_a_429_backs_off_for_its_retry_after_capped() -> None:
    b = UpstreamBackoff(1.0, 60.0)
    assert b.settle(H, 0.0, 1e9, status=429, retry_after="30") == 30.0
    assert not b.admit(H, 29.9)
    refused = b.refusal(H, 10.0, "https://r/v2/x/manifests/v1")
    # The refusal repeats the registry's status, its Retry-After the seconds left.
    assert isinstance(refused, OriginStatusError)
    assert (refused.status, refused.retry_after) == (429, "20")
    assert b.admit(H, 30.0)
    assert b.settle(H, 30.0, 1e9, status=429, retry_after="3600") == 60.0  # hostile: capped
    assert b.settle(H, 90.0, 1e9) is None  # it served: no more backoff
    assert b.admit(H, 90.0)


def test_a_retry_after_date_counts_from_the_wall_clock() -> None:
    b = UpstreamBackoff(1.0, 60.0)
    wall = 2_000_000_000.0  # 2033-05-18 03:33:20 GMT
    date = formatdate(wall + 45, usegmt=True)
    assert b.settle(H, 5.0, wall, status=503, retry_after=date) == 45.0
    assert b.wait_s(H, 6.0) == 44.0
    past = formatdate(wall - 100, usegmt=True)
    assert b.settle(H, 50.0, wall, status=503, retry_after=past) == 0.0  # asked again at once


def test_without_retry_after_the_delay_doubles_and_other_answers_end_it() -> None:
    b = UpstreamBackoff(2.0, 60.0)
    assert b.settle(H, 0.0, 0.0, status=429) == 2.0
    assert b.settle(H, 2.0, 0.0, status=429) == 4.0
    assert b.settle(H, 6.0, 0.0, status=404) is None  # an answer about the object
    assert b.failures(H) == 0
    assert b.settle(H, 6.0, 0.0, status=500) is None  # one broken path, not the registry
    assert b.settle(H, 6.0, 0.0, unreachable=True) == 2.0
    refused = b.refusal(H, 7.0, "https://r/v2/x/blobs/y")
    assert isinstance(refused, OriginUnreachableError)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        ("Thu, 01 Jan 1970 00:01:40 GMT", 90.0),  # 100 s, at a wall clock of 10 s
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0.0),  # past
        ("soon", None),
        ("-5", None),
        ("", None),
        ("Thu, 01 Jan 1970 00:01:40", None),  # no zone: not an HTTP-date
    ],
)
def test_retry_after_seconds(value: str, seconds: float | None) -> None:
    assert retry_after_s(value, 10.0) == seconds
