"""Sending :data:`~frumitcache.content.Piece` bodies on an h11 connection: bytes as they are,
chunk files with ``sendfile`` (the kernel copies page cache to socket; nothing enters Python).

Two steps, so that a chunk file that cannot be opened (out of descriptors, evicted) is found
before the response head goes out and the client gets an honest status instead of a cut body::

    async with open_piece(piece) as body:    # StoreError if the file cannot be opened
        ...send the head if not sent yet (send_head: held for the body's first segment)...
        await send_piece(conn, stream, body)
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio

from frumitcache._sendfile import FileRange, send_body
from frumitcache.content._response import ChunkFile, Piece
from frumitcache.errors import StoreError

Body = bytes | FileRange
_NOTSENT_LOWAT: int | None = getattr(socket, "TCP_NOTSENT_LOWAT", None)
# Waits before retrying an open that ran out of descriptors; None: give up (about 1.5 s).
_EMFILE_BACKOFF_S = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, None)
# Unsent bytes the kernel may queue on a socket carrying file bodies. trio sets 16 KiB on
# every SocketStream (latency for small messages); for a body that means a wake-up of the
# event loop, hence a round of Python, per ~64 KiB the client reads, and an idle link while a
# CPU-starved Pi waits for its next slice. The socket's send buffer still bounds the queue, and
# sendfile queues page-cache references, not copies.
BULK_NOTSENT_LOWAT = 4 << 20


@asynccontextmanager
async def open_piece(piece: Piece) -> AsyncIterator[Body]:
    """The piece ready to send: bytes, or an open chunk file's range (closed on exit).

    The chunk file is opened in the event loop, not a worker thread: an open of a local file
    costs microseconds, while a thread hop per request was half of a hot apt proxy's CPU."""
    if not isinstance(piece, ChunkFile):
        yield piece
        return
    fd = -1
    for delay in _EMFILE_BACKOFF_S:
        try:
            fd = os.open(piece.path, os.O_RDONLY | os.O_CLOEXEC)
            break
        except OSError as exc:
            if exc.errno not in (errno.EMFILE, errno.ENFILE) or delay is None:
                raise StoreError(
                    f"cannot open chunk file {piece.path.name}: {exc.strerror or exc}"
                ) from exc
            # Out of descriptors is usually brief (other sends finish, idle connections are
            # closed): wait a little rather than fail a request that would succeed.
            await trio.sleep(delay)
    try:
        yield FileRange(fd, piece.offset, piece.count)
    finally:
        os.close(fd)


async def send_head(
    conn: h11.Connection, stream: trio.abc.Stream, head: h11.Response, body: Body
) -> None:
    """Send the response ``head`` of ``body`` (opened by :func:`open_piece`). Ahead of a file
    body the kernel holds it back (``MSG_MORE``) to leave with the body's first bytes: one
    segment, one wake-up of the client, fewer for the machine."""
    data = conn.send(head) or b""
    if not (isinstance(body, FileRange) and isinstance(stream, trio.SocketStream)):
        await stream.send_all(data)
        return
    view = memoryview(data)
    while view:
        try:
            sent = await stream.socket.send(view, socket.MSG_MORE)
        except OSError as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        view = view[sent:]


async def send_piece(
    conn: h11.Connection, stream: trio.abc.Stream, body: Piece | FileRange
) -> None:
    """Send one piece (opened by :func:`open_piece`, or a :class:`ChunkFile` opened here);
    raises ``trio.BrokenResourceError`` when the client went away, ``EOFError`` when a chunk
    file is shorter than the piece claims (drop the connection), and
    :class:`~frumitcache.errors.StoreError` when a chunk file cannot be opened."""
    if isinstance(body, ChunkFile):
        async with open_piece(body) as opened:
            await send_piece(conn, stream, opened)
        return
    if isinstance(body, FileRange):
        if isinstance(stream, trio.SocketStream):
            if _NOTSENT_LOWAT is not None:
                with contextlib.suppress(OSError):  # not TCP (a Unix socket): nothing to raise
                    stream.setsockopt(socket.IPPROTO_TCP, _NOTSENT_LOWAT, BULK_NOTSENT_LOWAT)
            await send_body(conn, stream, body)
            return
        # Not a socket (a memory stream in a test, a TLS wrapper): copy through Python.
        data = await trio.to_thread.run_sync(os.pread, body.fd, body.count, body.offset)
        if len(data) != body.count:
            raise EOFError(f"chunk file ended {body.count - len(data)} bytes early")
        body = data
    for part in conn.send_with_data_passthrough(h11.Data(data=body)) or ():
        await stream.send_all(part)
