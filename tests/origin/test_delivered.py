"""The origin's second count: body bytes its client's TCP acknowledged (testing/_delivered.py).

A client that stops reading and goes leaves bytes in the origin's send buffer that were
counted as sent but never crossed; ``bytes_delivered`` leaves them out."""

from __future__ import annotations

import os
import socket
import struct

import httpx
import trio

from frumitcache.testing._delivered import CountedStream
from frumitcache.testing.origin import OriginServer

BIG = os.urandom(16 << 20)


async def test_complete_responses_are_delivered_in_full(origin: OriginServer) -> None:
    origin.add("/a.bin", BIG[: 1 << 20])
    with trio.fail_after(10):
        async with httpx.AsyncClient() as client:
            r = await client.get(origin.url("/a.bin"))
            assert len(r.content) == 1 << 20
            r = await client.get(origin.url("/a.bin"), headers={"Range": "bytes=1000-"})
            assert len(r.content) == (1 << 20) - 1000
            r = await client.get(origin.url("/missing"))
            assert r.status_code == 404
            stats = origin.stats.to_json()
    sent = [e["bytes_sent"] for e in stats["log"]]
    assert sent[:2] == [1 << 20, (1 << 20) - 1000]
    assert [e["bytes_delivered"] for e in stats["log"]] == sent
    assert stats["total_bytes_delivered"] == stats["total_bytes_sent"]


async def test_a_client_that_stops_reading_is_not_counted_for_the_origins_buffer(
    origin: OriginServer, address: str
) -> None:
    origin.add("/big.bin", BIG)
    with trio.fail_after(20):
        sock = trio.socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        await sock.connect((address, origin.port))
        request = f"GET /big.bin HTTP/1.1\r\nHost: {address}\r\n\r\n".encode()
        await sock.send(request)
        read = 0
        while read < 200_000:
            read += len(await sock.recv(65536))
        # Stop reading until the origin's buffers are full and it stops counting.
        last = -1
        while origin.stats.bytes_sent["/big.bin"] != last:
            last = origin.stats.bytes_sent["/big.bin"]
            await trio.sleep(0.3)
        entry = origin.stats.log[0]
        live = entry.bytes_delivered
        # Go as an aborting client does: RST, the unread bytes dropped.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
        assert entry.delivery is not None
        stream = entry.delivery.stream
        assert isinstance(stream, CountedStream)
        while not stream.closed:  # noqa: ASYNC110 - the origin's handler closes it, no event
            await trio.sleep(0.05)
    sent, delivered = entry.bytes_sent, entry.bytes_delivered
    assert sent < len(BIG)  # the origin was held by flow control, not done
    assert live is not None
    assert delivered is not None
    assert read <= delivered == live < sent  # the origin's own buffer did not cross
    assert origin.stats.total_bytes_delivered == delivered
