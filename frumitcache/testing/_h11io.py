"""The test origin's wire: reading a request head and body with h11 over a trio stream,
sending events and small complete responses."""

from __future__ import annotations

import socket
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

import h11
import trio

from frumitcache.testing._delivered import CountedStream


def socket_of(stream: trio.abc.Stream) -> socket.socket:
    """The socket under a plain, TLS or counted stream (for SO_LINGER)."""
    while isinstance(stream, trio.SSLStream | CountedStream):
        stream = stream.transport_stream if isinstance(stream, trio.SSLStream) else stream.inner
    assert isinstance(stream, trio.SocketStream)
    return stream.socket  # type: ignore[return-value]


def peer_of(stream: trio.abc.Stream) -> str:
    """The client's address ("" if gone): a test tells one agent's origin bytes from another's."""
    try:
        return str(socket_of(stream).getpeername()[0])
    except OSError:
        return ""


async def read_request(
    conn: h11.Connection, stream: trio.abc.Stream
) -> tuple[h11.Request | None, bytes]:
    request: h11.Request | None = None
    body = bytearray()
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            return request, bytes(body)
        else:  # ConnectionClosed (or PAUSED, which a well-behaved client never causes)
            return None, b""


async def send(conn: h11.Connection, stream: trio.abc.Stream, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def send_simple(
    conn: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    record: Callable[[int], None],
    method: str,
    extra: list[tuple[str, str]] | None = None,
) -> None:
    text = f"{status} {reason(status)}\n".encode()
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(text))), *(extra or [])]
    response = h11.Response(status_code=status, headers=headers, reason=reason(status).encode())
    await send(conn, stream, response)
    if method != "HEAD":
        record(len(text))
        await send(conn, stream, h11.Data(data=text))
    await send(conn, stream, h11.EndOfMessage())


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Status"
