"""The h11 helpers shared by the peer HTTP server (:mod:`._peer_http`) and its client
(:mod:`._peer_client`)."""

from __future__ import annotations

import h11
import trio

Address = tuple[str, int]


def header(req: h11.Request, name: bytes) -> bytes | None:
    for key, value in req.headers:
        if key == name:
            return bytes(value)
    return None


async def next_event(conn: h11.Connection, stream: trio.SocketStream) -> object:
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(data)
            continue
        return event


async def send_simple(
    conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes
) -> None:
    head = h11.Response(status_code=status, headers=[(b"content-length", str(len(body)).encode())])
    await stream.send_all(
        (conn.send(head) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )
