"""The control socket's wire format: round trips, and hostile bytes give ProtocolError only."""

from __future__ import annotations

import contextlib

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from frumitcache.control import (
    Data,
    Decoder,
    Failed,
    Message,
    Pull,
    PullDone,
    PullStarted,
    Status,
    StatusRequest,
    encode,
)
from frumitcache.control._protocol import MAX_FRAME
from frumitcache.errors import OriginStatusError, ProtocolError

MESSAGES: list[Message] = [
    Pull(url="http://127.0.0.2/a", sha256=b"\x01" * 32, offset=5),
    Pull(url="http://127.0.0.2/a"),
    StatusRequest(),
    PullStarted(size=None, source="origin"),
    Data(b"abc" * 100),
    PullDone(digest=b"\x02" * 32, size=300),
    Failed(code="origin-status", message="404", status=404),
    Status(
        version="0",
        node="n",
        address="127.0.0.1",
        socket="/s",
        store_path="/p",
        apt="",
        pid=1,
        uptime_s=1.5,
        store={"bytes": 1},
        origin={},
        site={"members": 1, "seeder": "n"},
    ),
    Status(
        version="0",
        node="n",
        address="127.0.0.1",
        socket="/s",
        store_path="/p",
        apt="",
        pid=1,
        uptime_s=1.5,
        store={},
        origin={},
        site={},
        oci="127.0.0.1:3146",
        oci_counters={"requests": 3, "manifest_gets_spared": 2},
    ),
]


def decode_all(data: bytes) -> list[Message]:
    decoder = Decoder()
    decoder.feed(data)
    return list(decoder)


def test_round_trip_in_one_stream() -> None:
    assert decode_all(b"".join(encode(m) for m in MESSAGES)) == MESSAGES


def test_round_trip_byte_by_byte() -> None:
    decoder = Decoder()
    out: list[Message] = []
    for byte in b"".join(encode(m) for m in MESSAGES):
        decoder.feed(bytes([byte]))
        out.extend(decoder)
    assert out == MESSAGES


def test_failed_rebuilds_the_error() -> None:
    err = Failed.from_error(OriginStatusError("gone", status=404)).to_error()
    assert isinstance(err, OriginStatusError)
    assert err.status == 404


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"t": "nope"}, "unknown control message"),
        ([1, 2], "tagged map"),
        ({"t": "pull"}, "missing field"),
        ({"t": "pull", "url": 5}, "wrong type"),
        ({"t": "pull", "url": "u", "offset": True}, "wrong type"),
        ({"t": "pull", "url": "u", "extra": 1}, "unexpected fields"),
        ({"t": "data", "data": "text, not bytes"}, "wrong type"),
    ],
)
def test_bad_frames_are_protocol_errors(obj: object, match: str) -> None:
    with pytest.raises(ProtocolError, match=match):
        decode_all(msgpack.packb(obj, use_bin_type=True))


def test_an_oversized_frame_is_refused() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError, match="larger than"):
        decoder.feed(b"\x00" * (MAX_FRAME + 1))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_garbage_raises_nothing_but_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode_all(data)
