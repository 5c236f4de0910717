"""Messages too large for a frame (``_bulk``): the outbox and the checks of a fetched body, pure
(no sockets, time passed in). The description of a 50 GiB object is the running example."""

from __future__ import annotations

import hashlib

import msgpack
import pytest

from frumitcache.site import (
    Beacon,
    Bulk,
    ChunkHolders,
    FrameCodec,
    FrameRejected,
    Have,
    ObjectAnnounce,
    ObjectInfo,
    ObjectManifest,
)
from frumitcache.site._bulk import MAX_BODY, Outbox, open_bulk
from frumitcache.site._codec import DEFAULT_MAX_FRAME, decode_body, encode_body
from tests.site.sim import member

GiB = 1 << 30
CHUNK = 4 << 20
KEY = b"k" * 32


def manifest_of(
    size: int, chunk_size: int = CHUNK, url: str = "http://o/big.img"
) -> ObjectManifest:
    count = -(-size // chunk_size)
    chunks = tuple(hashlib.sha256(i.to_bytes(8, "big")).digest() for i in range(count))
    return ObjectManifest(url, b"\7" * 32, size, chunk_size, chunks, True)


BIG = manifest_of(50 * GiB)  # 12,800 chunks of 4 MiB


def test_a_50_gib_description_does_not_fit_a_frame_and_travels_as_a_bulk_body() -> None:
    assert len(BIG.chunks) == 12_800
    info = ObjectInfo(
        42, BIG.url, BIG, tuple(ChunkHolders(full=("pi-01", "pi-02")) for _ in BIG.chunks)
    )
    seeder, asker = FrameCodec(KEY, "pi-00", boot=1), FrameCodec(KEY, "pi-03", boot=2)
    with pytest.raises(FrameRejected) as rejected:
        seeder.encode(info, to="pi-03", wall=0.0)
    assert rejected.value.reason == "too-large"
    outbox = Outbox(first_token=1000)
    body = encode_body(info)
    assert DEFAULT_MAX_FRAME < len(body) <= MAX_BODY
    stub = outbox.put(body, now=0.0)
    assert stub is not None
    frame = seeder.encode(stub, to="pi-03", wall=0.0)
    assert len(frame) < 200
    # The asker gets the small frame, fetches the body named in it, and has the reply.
    sender, got = asker.decode(frame, wall=0.0)
    assert (sender, got) == ("pi-00", stub)
    assert isinstance(got, Bulk)
    fetched = outbox.get(got.token, now=1.0)
    assert fetched is not None
    assert open_bulk(got, fetched) == info


@pytest.mark.parametrize(
    "msg",
    [
        Have("pi-01", objects=(BIG,)),
        ObjectAnnounce(BIG, "pi-00"),
        ObjectInfo(1, BIG.url, None),
    ],
)
def test_bodies_round_trip(msg: Have | ObjectAnnounce | ObjectInfo) -> None:
    assert decode_body(encode_body(msg)) == msg


def test_one_body_for_many_recipients_is_kept_once_under_one_token() -> None:
    outbox = Outbox(first_token=7)
    body = encode_body(ObjectAnnounce(BIG, "pi-00"))
    stubs = {outbox.put(body, now=float(i)) for i in range(30)}  # to 30 members
    assert len(stubs) == 1
    assert len(outbox) == 1
    assert outbox.bytes == len(body)
    other = outbox.put(encode_body(Have("pi-00", objects=(BIG,))), now=30.0)
    assert other is not None
    assert other.token == 8


def test_bodies_expire_and_the_outbox_is_bounded() -> None:
    outbox = Outbox(keep_s=30.0, max_bytes=3000)
    a = outbox.put(b"a" * 1000, now=0.0)
    b = outbox.put(b"b" * 1000, now=10.0)
    assert a is not None
    assert b is not None
    assert outbox.get(a.token, now=29.0) == b"a" * 1000
    assert outbox.get(a.token, now=30.0) is None  # kept 30 s
    assert outbox.get(b.token, now=30.0) == b"b" * 1000
    # Past max_bytes the oldest go first.
    c = outbox.put(b"c" * 1500, now=31.0)
    d = outbox.put(b"d" * 1500, now=32.0)
    assert c is not None
    assert d is not None
    assert outbox.get(b.token, now=32.0) is None
    assert outbox.get(d.token, now=32.0) == b"d" * 1500
    assert outbox.bytes <= 3000
    # A body larger than the outbox (or MAX_BODY) is not kept: the sender drops the message.
    assert outbox.put(b"e" * 3001, now=33.0) is None
    assert outbox.get(12345, now=33.0) is None  # a token never given out


def test_hostile_bodies_are_rejected() -> None:
    good = encode_body(ObjectAnnounce(BIG, "pi-00"))
    stub = Bulk(1, len(good), hashlib.sha256(good).digest())
    # A body swapped on the way (the peer port is not the frame's MAC): size or digest differ.
    swapped = good[:-1] + bytes([good[-1] ^ 1])
    for body in (good + b"x", swapped, b""):
        with pytest.raises(FrameRejected) as rejected:
            open_bulk(stub, body)
        assert rejected.value.reason == "bulk-mismatch"

    def named(body: bytes) -> Bulk:  # as a member with the key (or a bug) would name it
        return Bulk(2, len(body), hashlib.sha256(body).digest())

    hostile = {
        b"\xc1garbage": "garbage",
        msgpack.packb({"not": "a list"}): "malformed",
        msgpack.packb(["Bulk", {"token": 1, "size": 1, "sha256": b"x"}]): "unknown-type",
        msgpack.packb(["Beacon", {}]): "unknown-type",
        msgpack.packb(["Nope", {}]): "unknown-type",
        msgpack.packb(["Have", {"node_id": 5}]): "bad-field",
        msgpack.packb(["Have", {"node_id": "a", "extra": 1}]): "bad-field",
    }
    for body, reason in hostile.items():
        with pytest.raises(FrameRejected) as rejected:
            open_bulk(named(body), body)
        assert rejected.value.reason == reason, body
    # Chains and broadcasts are refused on the way out too.
    with pytest.raises(TypeError):
        encode_body(Bulk(1, 1, b"x"))
    with pytest.raises(TypeError):
        encode_body(Beacon(member(1), 1, None, 1))
