"""Zero-copy sends of file ranges on trio sockets: ``os.sendfile`` on the non-blocking socket,
``wait_writable`` when its buffer is full.

Bytes that are only moved (a stored chunk to a peer or to apt) never enter Python: the kernel
copies from the page cache to the socket. Works with h11 through
``Connection.send_with_data_passthrough``: the body is a :class:`FileRange` placeholder that
h11 frames (it only needs the length) and :func:`send_body` carries out.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio

#: Bytes per sendfile call: small enough to pace with a token bucket and to notice a cancel.
STEP = 1 << 20
PACED_STEP = 64 * 1024


@dataclass(frozen=True, slots=True)
class FileRange:
    """``count`` bytes of the open file ``fd`` from ``offset`` (an h11 Data placeholder)."""

    fd: int
    offset: int
    count: int

    def __len__(self) -> int:
        return self.count


async def sendfile(
    stream: trio.SocketStream,
    part: FileRange,
    *,
    pace: Callable[[int], float] | None = None,
) -> int:
    """Send ``part`` on ``stream``'s socket; ``pace(n)`` gives seconds to wait before ``n``
    more bytes (a token bucket). Returns the bytes sent; raises ``trio.BrokenResourceError``
    when the peer went away and ``EOFError`` when the file is shorter than ``part`` claims."""
    sock = stream.socket
    offset, left = part.offset, part.count
    while left:
        # Paced sends go in smaller steps so the rate stays smooth.
        step = min(left, STEP if pace is None else PACED_STEP)
        if pace is not None:
            await trio.sleep(pace(step))
        else:
            await trio.lowlevel.checkpoint_if_cancelled()
        end = offset + step
        while offset < end:
            try:
                n = os.sendfile(sock.fileno(), part.fd, offset, end - offset)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            except (BrokenPipeError, ConnectionError) as exc:
                raise trio.BrokenResourceError(str(exc)) from exc
            if n == 0:
                raise EOFError(f"file ended {part.offset + part.count - offset} bytes early")
            offset += n
        left -= step
    return part.count


async def send_body(
    conn: h11.Connection,
    stream: trio.SocketStream,
    part: FileRange,
    *,
    pace: Callable[[int], float] | None = None,
) -> None:
    """Send an h11 Data event whose body is ``part`` (framed by h11, sent by sendfile)."""
    data: Any = part  # h11 passes any sized object through untouched
    pieces: list[Any] = conn.send_with_data_passthrough(h11.Data(data=data)) or []
    for piece in pieces:
        if isinstance(piece, FileRange):
            await sendfile(stream, piece, pace=pace)
        else:
            await stream.send_all(piece)
