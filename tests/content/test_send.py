"""send_piece over a real loopback TCP connection: file bodies go out whole, with a deep queue."""

from __future__ import annotations

import socket
from pathlib import Path

import h11
import pytest
import trio

from frumitcache.content import ChunkFile, open_piece, send_head, send_piece
from frumitcache.content._send import BULK_NOTSENT_LOWAT
from frumitcache.testing.net import loopback_address


@pytest.mark.skipif(not hasattr(socket, "TCP_NOTSENT_LOWAT"), reason="no TCP_NOTSENT_LOWAT")
async def test_a_file_body_raises_the_not_sent_low_water_mark(tmp_path: Path) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB
    path = tmp_path / "chunk"
    path.write_bytes(data)
    address = loopback_address()
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host=address)
        port = listeners[0].socket.getsockname()[1]
        async with listeners[0], await trio.open_tcp_stream(address, port) as client:
            server = await listeners[0].accept()
            async with server:
                lowat = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
                assert lowat < BULK_NOTSENT_LOWAT  # trio's default for small messages
                conn = h11.Connection(h11.SERVER)
                conn.receive_data(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                assert isinstance(conn.next_event(), h11.Request)
                head = h11.Response(status_code=200, headers=[("Content-Length", str(len(data)))])
                await server.send_all(conn.send(head) or b"")
                received = bytearray()

                async def receive() -> None:
                    while b"\r\n\r\n" not in received or len(
                        received.partition(b"\r\n\r\n")[2]
                    ) < len(data):
                        received.extend(await client.receive_some(1 << 16))

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(receive)
                    await send_piece(conn, server, ChunkFile(path, 0, len(data)))
                assert received.partition(b"\r\n\r\n")[2] == data
                lowat = server.getsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT)
                assert lowat == BULK_NOTSENT_LOWAT


async def test_a_head_ahead_of_a_file_body_arrives_with_it(tmp_path: Path) -> None:
    """send_head holds the head for the body's first segment; the client still gets the
    exact response, head then body."""
    data = b"x" * 5000
    path = tmp_path / "chunk"
    path.write_bytes(data)
    address = loopback_address()
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host=address)
        port = listeners[0].socket.getsockname()[1]
        async with listeners[0], await trio.open_tcp_stream(address, port) as client:
            server = await listeners[0].accept()
            async with server:
                conn = h11.Connection(h11.SERVER)
                conn.receive_data(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
                assert isinstance(conn.next_event(), h11.Request)
                head = h11.Response(status_code=200, headers=[("Content-Length", "5000")])
                async with open_piece(ChunkFile(path, 0, len(data))) as body:
                    await send_head(conn, server, head, body)
                    await send_piece(conn, server, body)
                await server.send_all(conn.send(h11.EndOfMessage()) or b"")
                received = bytearray()
                while len(received.partition(b"\r\n\r\n")[2]) < len(data):
                    received.extend(await client.receive_some(1 << 16))
        status, _, rest = bytes(received).partition(b"\r\n")
        assert status == b"HTTP/1.1 200 "
        assert rest.partition(b"\r\n\r\n")[2] == data
