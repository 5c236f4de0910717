"""Sending :data:`~frumitcache.content.Piece` bodies on an h11 connection: bytes as they are,
chunk files with ``sendfile`` (the kernel copies page cache to socket; nothing enters Python).

Two steps, so that a chunk file that cannot be opened (out of descriptors, evicted) is found
before the response head goes out and the client gets an honest status instead of a cut body::

    async with open_piece(piece) as body:    # StoreError if the file cannot be opened
        ...send the head if not sent yet...
        await send_piece(conn, stream, body)
"""

from __future__ import annotations

import errno
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import h11
import trio

from frumitcache._sendfile import FileRange, send_body
from frumitcache.content._response import ChunkFile, Piece
from frumitcache.errors import StoreError

Body = bytes | FileRange
# Waits before retrying an open that ran out of descriptors; None: give up (about 1.5 s).
_EMFILE_BACKOFF_S = (0.02, 0.05, 0.1, 0.2, 0.4, 0.7, None)


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
            await send_body(conn, stream, body)
            return
        # Not a socket (a memory stream in a test, a TLS wrapper): copy through Python.
        data = await trio.to_thread.run_sync(os.pread, body.fd, body.count, body.offset)
        if len(data) != body.count:
            raise EOFError(f"chunk file ended {body.count - len(data)} bytes early")
        body = data
    for part in conn.send_with_data_passthrough(h11.Data(data=body)) or ():
        await stream.send_all(part)
