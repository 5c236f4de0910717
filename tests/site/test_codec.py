"""The frame codec: round trips, authentication, replay protection, and fuzzed input."""

from __future__ import annotations

import hashlib
import hmac

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frumitcache.errors import ProtocolError
from frumitcache.site import (
    MESSAGE_TYPES,
    REASONS,
    Bye,
    Claim,
    FrameCodec,
    FrameRejected,
    Message,
    derive_mac_key,
)
from frumitcache.site._codec import MAGIC, WINDOW
from tests.site.strategies import messages, wire_values

KEY = derive_mac_key(b"k" * 32, "site")
WALL = 1_700_000_000.0


def pair(max_skew_s: float = 60.0) -> tuple[FrameCodec, FrameCodec]:
    return (
        FrameCodec(KEY, "alice", boot=1, max_skew_s=max_skew_s),
        FrameCodec(KEY, "bob", boot=2, max_skew_s=max_skew_s),
    )


def reason(codec: FrameCodec, frame: bytes, wall: float = WALL) -> str:
    with pytest.raises(FrameRejected) as info:
        codec.decode(frame, wall=wall)
    assert info.value.reason in REASONS
    assert isinstance(info.value, ProtocolError)
    return info.value.reason


def signed(body: bytes, key: bytes = KEY) -> bytes:
    return MAGIC + hmac.new(key, MAGIC + body, hashlib.sha256).digest() + body


@settings(max_examples=300, deadline=None)
@given(messages())
def test_every_message_round_trips(msg: Message) -> None:
    alice, bob = pair()
    frame = alice.encode(msg, wall=WALL)
    assert bob.decode(frame, wall=WALL) == ("alice", msg)


def test_message_types_are_all_known() -> None:
    assert all(name == cls.__name__ for name, cls in MESSAGE_TYPES.items())
    assert len(MESSAGE_TYPES) == 14


def test_wrong_key_tampering_and_other_sites_are_rejected() -> None:
    alice, bob = pair()
    frame = alice.encode(Claim(3, "alice"), wall=WALL)
    tampered = bytearray(frame)
    tampered[-1] ^= 1
    assert reason(bob, bytes(tampered)) == "bad-mac"
    outsider = FrameCodec(derive_mac_key(b"x" * 32, "site"), "eve", boot=3)
    assert reason(bob, outsider.encode(Claim(3, "eve"), wall=WALL)) == "bad-mac"
    other_site = FrameCodec(derive_mac_key(b"k" * 32, "other"), "carol", boot=4)
    assert reason(bob, other_site.encode(Claim(3, "carol"), wall=WALL)) == "bad-mac"
    assert bob.decode(frame, wall=WALL)[1] == Claim(3, "alice")


def test_replays_are_rejected_within_and_beyond_the_window() -> None:
    alice, bob = pair()
    frames = [alice.encode(Bye("alice"), wall=WALL) for _ in range(WINDOW + 10)]
    # Out of order inside the window is fine; each frame is accepted once.
    bob.decode(frames[5], wall=WALL)
    bob.decode(frames[2], wall=WALL)
    assert reason(bob, frames[5]) == "replay"
    assert reason(bob, frames[2]) == "replay"
    bob.decode(frames[-1], wall=WALL)
    assert reason(bob, frames[3]) == "replay"  # now older than the window: cannot be checked
    bob.decode(frames[-2], wall=WALL)
    # A restarted sender (new boot) starts counting from zero again.
    reborn = FrameCodec(KEY, "alice", boot=99)
    bob.decode(reborn.encode(Bye("alice"), wall=WALL), wall=WALL)
    assert reason(bob, frames[-2]) == "replay"


def test_stale_and_future_frames_are_rejected() -> None:
    alice, bob = pair(max_skew_s=30.0)
    assert reason(bob, alice.encode(Bye("alice"), wall=WALL - 31)) == "stale"
    assert reason(bob, alice.encode(Bye("alice"), wall=WALL + 31)) == "stale"
    bob.decode(alice.encode(Bye("alice"), wall=WALL - 29), wall=WALL)
    no_clock = FrameCodec(KEY, "bob", boot=2, max_skew_s=0)
    no_clock.decode(alice.encode(Bye("alice"), wall=0.0), wall=WALL)


def test_own_frames_are_dropped() -> None:
    alice, _ = pair()
    assert reason(alice, alice.encode(Bye("alice"), wall=WALL)) == "own"


def test_size_limit_both_ways() -> None:
    alice = FrameCodec(KEY, "alice", boot=1, max_frame=200)
    with pytest.raises(FrameRejected):
        alice.encode(Bye("a" * 300), wall=WALL)
    assert reason(alice, b"\0" * 201) == "too-large"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xc1", "garbage"),  # never valid msgpack
        (msgpack.packb({"a": 1}), "malformed"),
        (msgpack.packb(["bob", 1, 0, WALL, "Bye"]), "malformed"),
        (msgpack.packb(["bob", 1, -1, WALL, "Bye", {"node_id": "b"}]), "malformed"),
        (msgpack.packb(["bob", True, 0, WALL, "Bye", {"node_id": "b"}]), "malformed"),
        (msgpack.packb(["b" * 256, 1, 0, WALL, "Bye", {"node_id": "b"}]), "malformed"),
        (msgpack.packb(["bob", 1, 0, WALL, "Hack", {}]), "unknown-type"),
        (msgpack.packb(["bob", 1, 0, WALL, "Bye", {"node_id": 7}]), "bad-field"),
        (msgpack.packb(["bob", 1, 0, WALL, "Bye", {}]), "bad-field"),
        (msgpack.packb(["bob", 1, 0, WALL, "Bye", {"node_id": "b", "x": 1}]), "bad-field"),
        (
            msgpack.packb(["bob", 1, 0, WALL, "Claim", {"term": True, "candidate": "b"}]),
            "bad-field",
        ),
        (msgpack.packb(["bob", 1, 0, WALL, "Bye", ["b"]]), "bad-field"),
    ],
)
def test_authentic_but_wrong_frames(body: bytes, expected: str) -> None:
    alice, _ = pair()
    assert reason(alice, signed(body)) == expected


def test_garbage_does_not_consume_sequence_numbers() -> None:
    alice, bob = pair()
    bad = signed(msgpack.packb(["alice", 1, 0, WALL, "Bye", {"node_id": 7}]))
    assert reason(bob, bad) == "bad-field"
    bob.decode(alice.encode(Bye("alice"), wall=WALL), wall=WALL)  # seq 0 still fresh


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    _, bob = pair()
    for frame in (data, MAGIC + data, signed(data)):
        outcome = "accepted"
        try:
            bob.decode(frame, wall=WALL)
        except FrameRejected as exc:
            outcome = exc.reason
        assert outcome in (*REASONS, "accepted")


@settings(max_examples=500, deadline=None)
@given(
    st.one_of(
        wire_values,
        st.tuples(
            wire_values,
            wire_values,
            wire_values,
            wire_values,
            st.sampled_from([*MESSAGE_TYPES, "Nope"]) | wire_values,
            wire_values,
        ).map(list),
        st.tuples(
            st.just("carol"),
            st.integers(0, 5),
            st.integers(0, 5),
            st.just(WALL),
            st.sampled_from(list(MESSAGE_TYPES)),
            st.dictionaries(st.text(max_size=12), wire_values, max_size=6),
        ).map(list),
    )
)
def test_authentic_random_structures_only_raise_protocol_errors(value: object) -> None:
    _, bob = pair()
    try:
        body = msgpack.packb(value, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return
    try:
        _sender, msg = bob.decode(signed(body), wall=WALL)
    except FrameRejected as exc:
        outcome = exc.reason
    else:
        outcome = "accepted"
        assert type(msg) in MESSAGE_TYPES.values()
    assert outcome in (*REASONS, "accepted")
