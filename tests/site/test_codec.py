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
    Beacon,
    Bye,
    Claim,
    FrameCodec,
    FrameRejected,
    MemberInfo,
    Message,
    ObjectInfo,
    ObjectManifest,
    derive_mac_key,
)
from frumitcache.site._codec import BROADCAST, MAGIC, WINDOW
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
    frame = alice.encode(msg, to="bob", wall=WALL)
    assert bob.decode(frame, wall=WALL) == ("alice", msg)


def test_message_types_are_all_known() -> None:
    assert all(name == cls.__name__ for name, cls in MESSAGE_TYPES.items())
    assert len(MESSAGE_TYPES) == 17


def test_wrong_key_tampering_and_other_sites_are_rejected() -> None:
    alice, bob = pair()
    frame = alice.encode(Claim(3, "alice"), to="bob", wall=WALL)
    tampered = bytearray(frame)
    tampered[-1] ^= 1
    assert reason(bob, bytes(tampered)) == "bad-mac"
    outsider = FrameCodec(derive_mac_key(b"x" * 32, "site"), "eve", boot=3)
    assert reason(bob, outsider.encode(Claim(3, "eve"), to="bob", wall=WALL)) == "bad-mac"
    other_site = FrameCodec(derive_mac_key(b"k" * 32, "other"), "carol", boot=4)
    assert reason(bob, other_site.encode(Claim(3, "carol"), to="bob", wall=WALL)) == "bad-mac"
    assert bob.decode(frame, wall=WALL)[1] == Claim(3, "alice")


def test_replays_are_rejected_within_and_beyond_the_window() -> None:
    alice, bob = pair()
    frames = [alice.encode(Bye("alice"), to="bob", wall=WALL) for _ in range(WINDOW + 10)]
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
    bob.decode(reborn.encode(Bye("alice"), to="bob", wall=WALL), wall=WALL)
    assert reason(bob, frames[-2]) == "replay"


def test_stale_and_future_frames_are_rejected() -> None:
    alice, bob = pair(max_skew_s=30.0)
    assert reason(bob, alice.encode(Bye("alice"), to="bob", wall=WALL - 31)) == "stale"
    assert reason(bob, alice.encode(Bye("alice"), to="bob", wall=WALL + 31)) == "stale"
    bob.decode(alice.encode(Bye("alice"), to="bob", wall=WALL - 29), wall=WALL)
    no_clock = FrameCodec(KEY, "bob", boot=2, max_skew_s=0)
    no_clock.decode(alice.encode(Bye("alice"), to="bob", wall=0.0), wall=WALL)


def test_own_frames_are_dropped() -> None:
    alice, _ = pair()
    assert reason(alice, alice.encode(Bye("alice"), to="bob", wall=WALL)) == "own"


def test_size_limit_both_ways() -> None:
    alice = FrameCodec(KEY, "alice", boot=1, max_frame=200)
    with pytest.raises(FrameRejected):
        alice.encode(Bye("a" * 300), to="bob", wall=WALL)
    assert reason(alice, b"\0" * 201) == "too-large"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xc1", "garbage"),  # never valid msgpack
        (msgpack.packb({"a": 1}), "malformed"),
        (msgpack.packb(["bob", "alice", 1, 0, WALL, "Bye"]), "malformed"),
        (msgpack.packb(["bob", "alice", 1, -1, WALL, "Bye", {"node_id": "b"}]), "malformed"),
        (msgpack.packb(["bob", "alice", True, 0, WALL, "Bye", {"node_id": "b"}]), "malformed"),
        (msgpack.packb(["b" * 256, "alice", 1, 0, WALL, "Bye", {"node_id": "b"}]), "malformed"),
        (msgpack.packb(["bob", "alice", 1, 0, WALL, "Hack", {}]), "unknown-type"),
        (msgpack.packb(["bob", "alice", 1, 0, WALL, "Bye", {"node_id": 7}]), "bad-field"),
        (msgpack.packb(["bob", "alice", 1, 0, WALL, "Bye", {}]), "bad-field"),
        (msgpack.packb(["bob", "alice", 1, 0, WALL, "Bye", {"node_id": "b", "x": 1}]), "bad-field"),
        (
            msgpack.packb(["bob", "alice", 1, 0, WALL, "Claim", {"term": True, "candidate": "b"}]),
            "bad-field",
        ),
        (msgpack.packb(["bob", "alice", 1, 0, WALL, "Bye", ["b"]]), "bad-field"),
    ],
)
def test_authentic_but_wrong_frames(body: bytes, expected: str) -> None:
    alice, _ = pair()
    assert reason(alice, signed(body)) == expected


def test_garbage_does_not_consume_sequence_numbers() -> None:
    alice, bob = pair()
    bad = signed(msgpack.packb(["alice", "bob", 1, 0, WALL, "Bye", {"node_id": 7}]))
    assert reason(bob, bad) == "bad-field"
    bob.decode(alice.encode(Bye("alice"), to="bob", wall=WALL), wall=WALL)  # seq 0 still fresh


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_protocol_errors(data: bytes) -> None:
    alice, bob = pair()
    # A well-formed frame for bob whose MAC is not made with the key (random bytes there).
    body = alice.encode(Bye("alice"), to="bob", wall=WALL)[len(MAGIC) + 32 :]
    forged = MAGIC + hashlib.sha256(data).digest() + body
    # Without the key nothing is ever accepted, and the reason says why.
    for frame in (data, MAGIC + data, forged):
        assert reason(bob, frame) in ("garbage", "bad-mac", "too-large")
    assert reason(bob, forged) == "bad-mac"
    # Signed random bytes: rejected with a known reason, or (never seen) a valid frame.
    outcome = "accepted"
    try:
        bob.decode(signed(data), wall=WALL)
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
            wire_values,
            st.sampled_from([*MESSAGE_TYPES, "Nope"]) | wire_values,
            wire_values,
        ).map(list),
        st.tuples(
            st.just("carol"),
            st.sampled_from(["bob", BROADCAST, "alice"]),
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


def test_a_frame_for_one_member_is_refused_by_another() -> None:
    """Finding 5: an ObjectInfo the seeder sent to node A, replayed by a keyless host to node
    B, must not reach B (before, frames named no recipient and B accepted it)."""
    seeder = FrameCodec(KEY, "seeder", boot=1)
    alice = FrameCodec(KEY, "alice", boot=2)
    bob = FrameCodec(KEY, "bob", boot=3)
    manifest = ObjectManifest("http://x/big.bin", b"\1" * 32, 10, 10, (b"\2" * 32,), True)
    frame = seeder.encode(ObjectInfo(7, "http://x/big.bin", manifest), to="alice", wall=WALL)
    assert reason(bob, frame) == "misaddressed"
    assert alice.decode(frame, wall=WALL)[0] == "seeder"
    assert reason(alice, frame) == "replay"


def test_only_beacons_and_bye_may_be_broadcast() -> None:
    alice, bob = pair()
    member = MemberInfo("alice", "127.0.0.1", 1, 2, 3)
    assert bob.decode(alice.encode(Beacon(member, 0, None, 1), to=None, wall=WALL), wall=WALL)
    assert bob.decode(alice.encode(Bye("alice"), to=None, wall=WALL), wall=WALL)
    with pytest.raises(TypeError):
        alice.encode(Claim(1, "alice"), to=None, wall=WALL)
    # Even signed with the key, a broadcast reply is not taken.
    body = msgpack.packb(
        [
            "alice",
            BROADCAST,
            1,
            0,
            WALL,
            "ObjectInfo",
            {"request_id": 1, "url": "u", "manifest": None},
        ]
    )
    assert reason(bob, signed(body)) == "misaddressed"


def test_replay_windows_are_per_sender_and_recipient() -> None:
    alice, bob = pair()
    carol = FrameCodec(KEY, "carol", boot=5)
    # Frames alice sends to carol in between do not age bob's window.
    to_bob = [alice.encode(Bye("alice"), to="bob", wall=WALL) for _ in range(3)]
    for _ in range(2 * WINDOW):
        carol.decode(alice.encode(Bye("alice"), to="carol", wall=WALL), wall=WALL)
    broadcast = alice.encode(Bye("alice"), to=None, wall=WALL)
    bob.decode(to_bob[2], wall=WALL)
    bob.decode(to_bob[0], wall=WALL)  # reordered, still inside bob's own window
    bob.decode(broadcast, wall=WALL)
    assert reason(bob, to_bob[0]) == "replay"
    assert reason(bob, broadcast) == "replay"
