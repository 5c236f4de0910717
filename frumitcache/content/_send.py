"""Sending :data:`~frumitcache.content.Piece` bodies on an h11 connection: bytes as they are,
chunk files with ``sendfile`` (the kernel copies page cache to socket; nothing enters Python)."""

from __future__ import annotations

import h11
import trio

from frumitcache._sendfile import FileRange, send_body
from frumitcache.content._response import ChunkFile, Piece


async def send_piece(conn: h11.Connection, stream: trio.SocketStream, piece: Piece) -> None:
    """Send one body piece; raises ``trio.BrokenResourceError`` when the client went away and
    ``EOFError`` when a chunk file is shorter than the piece claims (drop the connection)."""
    if not isinstance(piece, ChunkFile):
        await stream.send_all(conn.send(h11.Data(data=piece)) or b"")
        return
    try:
        f = await trio.open_file(piece.path, "rb")
    except FileNotFoundError as exc:
        raise EOFError(f"chunk file {piece.path.name} vanished") from exc
    async with f:
        await send_body(conn, stream, FileRange(f.fileno(), piece.offset, piece.count))
