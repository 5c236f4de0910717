"""The library's control messages survive the codec, and malformed ones are refused."""

from __future__ import annotations

import msgpack
import pytest

from frumitcache.control._protocol import (
    CacheListing,
    Decoder,
    EstimateReply,
    EstimateRequest,
    ImportReply,
    LocateReply,
    Message,
    PinRequest,
    PrefetchReply,
    PrefetchRequest,
    SiteReply,
    encode,
)
from frumitcache.errors import ProtocolError

SAMPLES: list[Message] = [
    PrefetchRequest("http://h/x", b"\x01" * 32, ["pi-00", "pi-01"]),
    PrefetchRequest("http://h/x"),
    PrefetchReply("http://h/x", {"pi-00": "fetching"}),
    PinRequest("ab" * 32, True),
    LocateReply("http://h/x", b"\x02" * 32, 10, 4, 1, True, False, {"pi-00": {"chunks": 1}}),
    SiteReply("pi-00", "default", False, "pi-01", 3, [{"node": "pi-00"}], {"rate": 1.5}, {}),
    EstimateRequest(["http://h/a", "http://h/b"]),
    EstimateReply([{"url": "http://h/a", "uplink": None}]),
    CacheListing([], ["http://h/part"]),
    ImportReply(2, 1, 1, 0, 100, ["x: bad"]),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.tag)
def test_round_trip(msg: Message) -> None:
    decoder = Decoder()
    decoder.feed(encode(msg))
    assert list(decoder) == [msg]


@pytest.mark.parametrize(
    "frame",
    [
        {"t": "estimate", "urls": "http://h/a"},  # a string is not a list of strings
        {"t": "estimate", "urls": ["http://h/a", 3]},
        {"t": "prefetch", "url": "http://h/x", "nodes": [None]},
        {"t": "pin", "target": "x"},  # missing field
        {
            "t": "import.",
            "files": 1,
            "imported": 1,
            "present": 0,
            "failed": 0,
            "bytes_imported": 1,
            "errors": [],
            "extra": 1,
        },
    ],
)
def test_malformed_frames_are_refused(frame: dict[str, object]) -> None:
    decoder = Decoder()
    decoder.feed(msgpack.packb(frame, use_bin_type=True))
    with pytest.raises(ProtocolError):
        list(decoder)
