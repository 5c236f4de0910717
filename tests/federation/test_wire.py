"""The federation link's pure rules: the target that names an origin URL, hostile targets,
and which answers a child takes."""

from __future__ import annotations

import pytest

from frumitcache._sendfile import paced_step
from frumitcache.federation import (
    RateFloor,
    Role,
    SiblingSlots,
    object_target,
    parse_target,
    sibling_ask,
    takes,
)
from frumitcache.federation._wire import IDLE_GAP_S, JOIN, RELAY, may_relay, parse_chain


@pytest.mark.parametrize(
    "url",
    [
        "http://deb.debian.org/debian/pool/main/h/hello/hello_2.10-3_arm64.deb",
        "https://example.org/a b?c=d&e=%2F#frag",
        "http://[fd00:42::1]:8080/x",
    ],
)
def test_a_target_round_trips_its_url(url: str) -> None:
    assert parse_target(object_target(url)) == url


@pytest.mark.parametrize(
    "target",
    [
        "/chunk/" + "0" * 64,  # the peer port's path, not ours
        "/federation/v1/object",  # no url
        "/federation/v1/object?url=",  # empty
        "/federation/v1/object?url=file%3A%2F%2F%2Fetc%2Fshadow",  # not http(s)
        "/federation/v1/object?url=http%3A%2F%2F",  # no host
        "/federation/v1/object?url=a&url=b",  # two
        "/federation/v1/object?url=http%3A%2F%2Fh%2F" + "a" * 20000,  # huge
        "/federation/v1/object?url=http%3A%2F%2F%5Bnot-v6%2Fx",  # broken brackets
    ],
)
def test_hostile_targets_name_nothing(target: str) -> None:
    assert parse_target(target) is None


def test_which_answers_a_child_takes() -> None:
    roles: tuple[Role, ...] = ("parent", "sibling")
    for role in roles:
        for status in (200, 206, 304, 416):
            assert takes(role, status, False)
        for status in (403, 500, 502, 503, 504):
            assert not takes(role, status, True)
    # The origin's own 404 through a parent is the answer; any other 404 is not.
    assert takes("parent", 404, True)
    assert not takes("parent", 404, False)
    assert not takes("sibling", 404, True)


def test_a_crawling_link_is_found_after_a_window() -> None:
    floor = RateFloor(min_rate=1000, window_s=10.0)
    assert not floor.add(5000, 100.0)  # the first piece starts the window (after the head)
    assert not floor.add(500, 105.0)
    assert floor.add(500, 110.0)  # 1000 bytes in 10 s: 100 B/s < 1000 B/s
    assert not floor.add(20_000, 115.0)
    assert not floor.add(20_000, 120.0)  # 40 kB in 10 s: fast enough


def test_a_crawling_link_is_found_while_its_parent_is_still_fetching() -> None:
    # A 1 Mbit/s link from a parent with chunks to spare: bytes every 0.1 s, never a wait.
    floor = RateFloor(min_rate=250_000, window_s=10.0)
    fired = [floor.add(12_500, 100.0 + t / 10, waited=0.1) for t in range(101)]
    assert fired == [False] * 100 + [True]


def test_a_parent_waiting_for_its_own_source_is_not_a_slow_link() -> None:
    # A fast link from a parent whose origin gives 1 MiB/s: a 4 MiB chunk in 0.1 s, then 4 s
    # of waiting for the next one. 1 MiB/s on average, under the floor; the link is not.
    floor = RateFloor(min_rate=2 * 1024 * 1024, window_s=10.0)
    now = 100.0
    for _chunk in range(10):
        for piece in range(64):
            now += 0.1 / 64
            assert not floor.add(65_536, now, waited=4.0 if piece == 0 else 0.0)
        now += 4.0
    # The same parent across a link slower than the floor while busy: found.
    floor = RateFloor(min_rate=2 * 1024 * 1024, window_s=10.0)
    fired = [floor.add(65_536, 100.0 + t / 10, waited=0.5) for t in range(101)]
    assert fired[-1], fired


def test_no_floor_never_fires() -> None:
    floor = RateFloor(min_rate=0, window_s=1.0)
    assert not any(floor.add(1, float(t)) for t in range(100))


@pytest.mark.parametrize(
    ("rate", "step"),
    [(10_000_000, 64 * 1024), (256 * 1024, 64 * 1024), (16 * 1024, 4 * 1024), (1000, 4 * 1024)],
)
def test_a_paced_link_sends_at_most_a_quarter_second_at_a_time(rate: int, step: int) -> None:
    """A member pacing a child link sends pieces the child's floor sees as a busy link: each
    at most a quarter second of the rate (so well under IDLE_GAP_S apart), at least 4 KiB."""
    assert paced_step(rate) == step
    if rate >= 16 * 1024:
        assert step / rate <= 0.25 < IDLE_GAP_S


def test_sibling_slots_refuse_past_the_limit_and_free_on_give() -> None:
    slots = SiblingSlots(2)
    assert slots.take()
    assert slots.take()
    assert not slots.take()  # a third sibling while two are served: busy
    assert slots.serving == 2  # a refusal takes no slot
    slots.give()
    assert slots.take()
    for _ in range(5):  # hostile: more gives than takes never go below zero
        slots.give()
    assert slots.serving == 0
    unlimited = SiblingSlots(0)
    assert all(unlimited.take() for _ in range(100))


@pytest.mark.parametrize(
    ("cache_control", "in_flight", "counted"),
    [
        ("only-if-cached", "", True),  # a sibling's ask for held content
        ("max-age=0, only-if-cached", "", True),
        ("only-if-cached", "join", False),  # a child joining its parent's fetch: never busy
        ("", "", False),  # a child asking its parent to fetch
        ("", "join", False),
    ],
)
def test_which_asks_share_the_sibling_slots(
    cache_control: str, in_flight: str, counted: bool
) -> None:
    assert sibling_ask(cache_control, in_flight) is counted


@pytest.mark.parametrize(
    ("asker", "own", "upstream", "depth", "allowed"),
    [
        ("b", "a", (), 2, True),  # a fetches from its parent: one relay level is allowed
        ("c", "b", ("a",), 2, False),  # b relays a's bytes already: depth 2 is reached
        ("c", "b", ("a",), 3, True),
        ("a", "b", ("a",), 4, False),  # a loop: b's bytes come through a
        ("x", "c", ("b", "a"), 4, True),
        ("b", "c", ("b", "a"), 4, False),  # any site up the chain, not only the nearest
        ("b", "b", (), 4, False),  # itself (two agents of one site)
        ("b", "a", None, 4, False),  # no fetch of its own, or its chain unknown
        ("b", "a", (), 0, False),  # relay_depth 0: held objects only
        ("", "a", (), 4, False),  # an asker without a site name cannot be checked for loops
        ("b c", "a", (), 4, False),  # nor one whose name is no label
        ("b", "", (), 4, False),  # nor a relay without a site name of its own
    ],
)
def test_a_sibling_relays_its_running_fetch_within_the_depth_and_never_in_a_loop(
    asker: str, own: str, upstream: tuple[str, ...] | None, depth: int, allowed: bool
) -> None:
    assert may_relay(asker, own, upstream, depth) is allowed


@pytest.mark.parametrize(
    ("header", "chain"),
    [
        ("a", ("a",)),
        ("b, a", ("b", "a")),
        ("", ()),
        ("a,,b", None),  # an empty name
        ("a,b c", None),  # not a label
        ("a,b\x00", None),
        (",".join(["s"] * 17), None),  # longer than any relay depth
        ("x" * 65, None),  # a label is at most 64 characters
    ],
)
def test_a_chain_header_is_read_strictly(header: str, chain: tuple[str, ...] | None) -> None:
    assert parse_chain(header) == chain


def test_a_relayed_ask_takes_a_sibling_slot_and_a_join_does_not() -> None:
    assert sibling_ask("only-if-cached", RELAY)
    assert not sibling_ask("only-if-cached", JOIN)
