"""A streamed response's body that can be left in the middle, cleanly.

httpx reads a body through a chain of async generators (its own and httpcore's). A fetch that
stops half-way (cancelled, or refusing the bytes) leaves them suspended, for the garbage
collector to finalise at some later moment (trio warns of each: a ResourceWarning); and
httpcore before 1.0 skips closing the connection when cancelled, so the origin would keep
sending into a socket nobody reads. :meth:`ResponseBody.abandon` closes the socket, then runs
the chain to its end (the closed socket ends it with an error), so nothing is left behind.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import socket
import struct
import termios
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, Protocol

import httpx
import trio

from frumitcache._log import get_logger
from frumitcache.errors import DigestMismatchError
from frumitcache.origin._hold import FetchHold

log = get_logger("origin")


class ResponseBody:
    """The body of one streamed response, read at most once through :meth:`chunks`."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._chunks: AsyncIterator[bytes] | None = None
        self.done = False  # read to its end, or abandoned

    @property
    def response(self) -> httpx.Response:
        return self._response

    def chunks(self) -> AsyncIterator[bytes]:
        self._chunks = self._response.aiter_raw()
        return self._chunks

    async def abandon(self, *, cancelled: bool = False) -> None:
        """Leave the body unread: a no-op when it was read to its end. Never raises; call it
        shielded. ``cancelled``: close the socket even if no byte was asked for yet (httpcore
        before 1.0 would not)."""
        if self.done:
            return
        self.done = True
        chunks, self._chunks = self._chunks, None
        if chunks is None and not cancelled:
            return  # no generator started: the response's own close is enough
        stream = self._response.extensions.get("network_stream")
        with contextlib.suppress(Exception):
            # First tell every layer the body is given up on (a federation link must not take
            # the break that follows for a failure of its own), then close the socket.
            await self._response.aclose()
        with contextlib.suppress(Exception):
            if stream is not None:
                await stream.aclose()
        if chunks is None:
            return
        with contextlib.suppress(Exception):
            if stream is None:  # no socket to close: closing the outer generator must do
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
                return
            async for _ in chunks:  # ends at once on the closed socket
                pass


@contextlib.asynccontextmanager
async def streamed(
    client: httpx.AsyncClient, request: httpx.Request
) -> AsyncIterator[ResponseBody]:
    """Send ``request`` and stream its answer; however the block ends, the body is left
    cleanly (read to its end or abandoned) and the response closed."""
    response = await client.send(request, stream=True)
    body = ResponseBody(response)
    try:
        yield body
    except trio.Cancelled:
        # A cancelled fetch must close its connection, or the origin keeps sending into
        # a socket nobody reads.
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await body.abandon(cancelled=True)
        raise
    finally:
        with trio.move_on_after(5) as scope:
            scope.shield = True
            await body.abandon()  # a no-op when read to its end or abandoned above
            await response.aclose()


class _Sink(Protocol):
    @property
    def offset(self) -> int: ...
    async def write(self, data: bytes) -> None: ...


async def copy_body(
    body: ResponseBody,
    sink: _Sink,
    *,
    url: str,
    limit: int | None,
    count: Callable[[int], None],
    pace: Callable[[int], Awaitable[None]],
    hold: FetchHold | None,
) -> None:
    """Write ``body`` into ``sink`` piece by piece, counting each piece and pacing it once
    written. Past ``limit`` bytes: :class:`DigestMismatchError` (the caller discards
    what was written). With ``hold``: no piece is written, and no next one read, while held;
    a hold that drains (:meth:`FetchHold.drain`) gets what has arrived, then this waits to be
    cancelled."""
    chunks = body.chunks()
    async for data in chunks:
        n = len(data)
        count(n)
        if limit is not None and sink.offset + n > limit:
            # h11 never reads past a Content-Length, so this is a chunked body longer
            # than expected, or a Content-Range that understated the object.
            raise DigestMismatchError(f"{url}: origin sent more than the {limit} bytes expected")
        # A piece read just before the hold waits for its end.
        if hold is not None and await hold.wait_body():
            await _drain(body, chunks, data, sink, count, hold, limit)
        await sink.write(data)
        await pace(n)
        # Not one more read from the socket while held.
        if hold is not None and await hold.wait_body():
            await _drain(body, chunks, b"", sink, count, hold, limit)
    body.done = True


#: Longest wait for a drained body's next piece when its socket is empty (what has arrived
#: comes at once); while the socket holds bytes the read waits for them, however busy the
#: process is (a seeder just resumed from SIGSTOP has a backlog: 50 ms left ~240 KiB behind).
#: The fence bounds the whole drain (:meth:`FetchHold.drain`'s ``limit_s``).
_DRAIN_READ_S = 0.05


async def _drain(
    body: ResponseBody,
    chunks: AsyncIterator[bytes],
    first: bytes,
    sink: _Sink,
    count: Callable[[int], None],
    hold: FetchHold,
    limit: int | None,
) -> NoReturn:
    """Write what a held fetch has received (``first``, then what waits in its socket and
    its HTTP reader's buffer, at most 64 KiB of it), through at most one chunk boundary and
    a byte short of the next one and of the object's end (``limit``, if known): a chunk it
    completes is stored (its seeder announces it as it stops, see agent/_seeder.py), the
    next stays unfinished (a tail), and no complete object appears. Then wait for the
    holder to stop the fetch."""
    grain = hold.grain or 1
    # A fence a few KB short of a boundary, with half a MB waiting: stopping at the boundary
    # would drop what crossed after it, and the next seeder would ask the origin again.
    room = 2 * grain - 1 - sink.offset % grain
    if limit is not None:
        room = min(room, limit - 1 - sink.offset)
    budget = min(room, _queued(body) + 65536)
    # Each read makes room, and the origin's send buffer would pour into it: bytes that cross
    # the uplink only to be dropped at the close. A tiny receive buffer keeps the window shut.
    sock = _socket(body)
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    taken = 0
    piece = first
    while True:
        take = piece[: max(0, budget - taken)]
        if take:
            await sink.write(take)
            taken += len(take)
        if taken >= budget:
            break
        with trio.move_on_after(math.inf if _queued(body) else _DRAIN_READ_S):
            try:
                piece = await chunks.__anext__()
            except StopAsyncIteration:
                break
            count(len(piece))
            continue
        break
    log.info("fetch.drained", taken=taken, budget=budget, left=_queued(body))
    hold.drained()
    await trio.sleep_forever()


def _socket(body: ResponseBody) -> Any:
    """The body's socket (a trio socket under httpcore's trio backend), or None."""
    stream = body.response.extensions.get("network_stream")
    return stream.get_extra_info("socket") if stream is not None else None


def _queued(body: ResponseBody) -> int:
    """Bytes waiting in the body's socket (0 when unknown)."""
    sock = _socket(body)
    if sock is None:
        return 0
    try:
        got = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", got)[0])


__all__ = ["ResponseBody", "copy_body"]
