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
#: The smallest paced step: a link paced below 16 KiB/s still sees a piece every quarter second.
MIN_PACED_STEP = 4 * 1024


def paced_step(rate: float) -> int:
    """Bytes per paced send at ``rate`` bytes/s: at most a quarter second of the rate, so a
    slow link's reader sees a steady trickle, never a burst then a long silence (which a
    child's rate floor would take for a parent with nothing to send)."""
    return max(MIN_PACED_STEP, min(PACED_STEP, int(rate / 4)))


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
    step_bytes: int = PACED_STEP,
) -> int:
    """Send ``part`` on ``stream``'s socket; ``pace(n)`` gives seconds to wait before ``n``
    more bytes (a token bucket), asked for ``step_bytes`` at a time. Returns the bytes sent;
    raises ``trio.BrokenResourceError`` when the peer went away and ``EOFError`` when the file
    is shorter than ``part`` claims."""
    sock = stream.socket
    offset, left = part.offset, part.count
    while left:
        # Paced sends go in smaller steps so the rate stays smooth.
        step = min(left, STEP if pace is None else step_bytes)
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
    step_bytes: int = PACED_STEP,
) -> None:
    """Send an h11 Data event whose body is ``part`` (framed by h11, sent by sendfile)."""
    data: Any = part  # h11 passes any sized object through untouched
    pieces: list[Any] = conn.send_with_data_passthrough(h11.Data(data=data)) or []
    for piece in pieces:
        if isinstance(piece, FileRange):
            await sendfile(stream, piece, pace=pace, step_bytes=step_bytes)
        else:
            await stream.send_all(piece)
