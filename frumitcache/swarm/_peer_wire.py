"""The h11 helpers shared by the peer HTTP server (:mod:`._peer_http`) and its client
(:mod:`._peer_client`)."""

from __future__ import annotations

import contextlib
import math
import os
import socket
from collections.abc import Callable

import h11
import trio

from frumitcache.errors import HolderSilentError, PeerError

Address = tuple[str, int]

#: Body bytes the kernel gathers before a receive wakes (``SO_RCVLOWAT``): without it a
#: chunk's body came a TCP segment or two per wake-up, each through h11 and trio's loop.
BODY_LOWAT = 128 * 1024
#: Bytes one read takes (the buffer each body reuses).
BODY_READ = 256 * 1024


def header(req: h11.Request | h11.Response, name: bytes) -> bytes | None:
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


def content_length(resp: h11.Response) -> int | None:
    """The response's Content-Length (h11 has checked it is one decimal), None without one."""
    value = header(resp, b"content-length")
    return None if value is None else int(value)


async def receive_body(
    conn: h11.Connection,
    stream: trio.SocketStream,
    length: int,
    sink: Callable[[memoryview], None],
    *,
    stall_s: float = math.inf,
) -> None:
    """Hand the ``length`` bytes of the Content-Length body after the head ``conn`` just
    parsed to ``sink``, piece by piece (a view valid only during the call), read straight
    from the socket: the kernel wakes the reader once ``BODY_LOWAT`` bytes wait (or the
    peer closes, or its receive window fills), not per segment. Raises PeerError when the
    peer closes early, HolderSilentError when no wake-up comes for ``stall_s``; the
    connection is not reused (its requests say ``close``)."""
    early = conn.trailing_data[0][:length]  # body bytes h11 read along with the head
    got = len(early)
    if early:
        sink(memoryview(early))
    sock = stream.socket
    fd = sock.fileno()
    buf = memoryview(bytearray(min(BODY_READ, max(length - got, 1))))
    lowat = 0
    while got < length:
        want = min(length - got, BODY_LOWAT)
        if want != lowat:
            lowat = want
            with contextlib.suppress(OSError):  # not a Linux TCP socket: wake per segment
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, want)
        # A slow holder (paced by its upload_rate) may not fill the low mark in ``stall_s``:
        # only a wait that ends with nothing to read at all is silence.
        with trio.move_on_after(stall_s) as waited:
            await trio.lowlevel.wait_readable(sock)
        try:
            n = os.readv(fd, [buf[: length - got]])
        except BlockingIOError:
            if waited.cancelled_caught:
                raise HolderSilentError(
                    f"no body bytes for {stall_s:g} s after {got} of {length}"
                ) from None
            continue
        if n == 0:
            raise PeerError(f"closed after {got} of {length} body bytes")
        got += n
        sink(buf[:n])


async def send_simple(
    conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes
) -> None:
    head = h11.Response(status_code=status, headers=[(b"content-length", str(len(body)).encode())])
    await stream.send_all(
        (conn.send(head) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )


#: The answers of ``GET /chunk/<hex>/state``: the chunk is whole here, being fetched (or queued
#: for a worker) here, neither while other chunks are, or neither and nothing at all is.
STATE_HELD = b"held"
STATE_FETCHING = b"fetching"
STATE_ABSENT = b"absent"
STATE_IDLE = b"idle"

#: Chunks whose trees one ``GET /trees/<hex>,<hex>,...`` may ask for (a 4.2 KB target).
MAX_TREES = 64


def pack_trees(trees: list[bytes | None]) -> bytes:
    """The body of a ``/trees`` answer: per asked chunk, in order, a 2-byte length and its
    pieces root + piece layer (at most 33 hashes); length 0 for a chunk not held."""
    out = bytearray()
    for tree in trees:
        body = tree or b""
        out += len(body).to_bytes(2, "big") + body
    return bytes(out)


def unpack_trees(body: bytes | bytearray, count: int) -> list[bytes | None]:
    """The inverse of :func:`pack_trees` for ``count`` chunks; ValueError when malformed."""
    trees: list[bytes | None] = []
    at = 0
    for _ in range(count):
        if at + 2 > len(body):
            raise ValueError("trees answer cut short")
        n = int.from_bytes(body[at : at + 2], "big")
        at += 2
        if at + n > len(body):
            raise ValueError("trees answer cut short")
        trees.append(bytes(body[at : at + n]) or None)
        at += n
    if at != len(body):
        raise ValueError("trees answer too long")
    return trees
