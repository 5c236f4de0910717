"""How many of the body bytes the test origin wrote its client's TCP acknowledged.

The origin counts a body piece as sent when it hands it to its socket. A client that stops
reading (a seeder held or SIGSTOPped mid-fetch) leaves the last pieces in the origin's send
buffer; when it then closes, those bytes never left the origin's host, yet they were counted.
On a real uplink they would not have crossed it. So each response also reports what the
client's kernel acknowledged: the bytes written on the connection minus those still
unacknowledged (``tcpi_bytes_acked`` from ``TCP_INFO``), taken off the end of the body, which
is what was written last. Bytes a client acknowledged but never read (its receive buffer) did
cross and count. Over TLS the two counts are not comparable (records, handshake): no figure.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

import trio

# struct tcp_info (linux/tcp.h): tcpi_bytes_acked is the u64 after tcpi_pacing_rate and
# tcpi_max_pacing_rate, at byte 120 (kernels since 4.1).
_ACKED_AT = 120
_INFO_LEN = 232


def bytes_acked(sock: socket.socket) -> int | None:
    """The connection's ``tcpi_bytes_acked``; None when the kernel or socket cannot say."""
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _INFO_LEN)
    except (OSError, AttributeError):
        return None
    if len(info) < _ACKED_AT + 8:
        return None
    return int(struct.unpack_from("Q", info, _ACKED_AT)[0])


class CountedStream(trio.abc.Stream):
    """A plain TCP stream that counts the bytes handed to it, and reads its acknowledged
    count until :meth:`aclose` (which keeps the last reading)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.inner = stream
        self.written = 0
        self._final: int | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def acked(self) -> int | None:
        if self._closed:
            return self._final
        return bytes_acked(self.inner.socket)  # type: ignore[arg-type]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        # Counted before the send, like the body pieces: a send cut short counts in full.
        self.written += len(data)
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        if not self._closed:
            self._final = bytes_acked(self.inner.socket)  # type: ignore[arg-type]
            self._closed = True
        await self.inner.aclose()


class Delivery:
    """One response's share of its connection: its body bytes are the last written until
    :meth:`end`, which notes how many bytes the connection had carried by then."""

    __slots__ = ("stream", "written_by")

    def __init__(self, stream: CountedStream) -> None:
        self.stream = stream
        self.written_by: int | None = None

    def end(self) -> None:
        self.written_by = self.stream.written

    def delivered(self, body_sent: int) -> int | None:
        """Of ``body_sent`` bytes, those the client acknowledged (as of now, or the close)."""
        acked = self.stream.acked()
        if acked is None:
            return None
        written = self.stream.written if self.written_by is None else self.written_by
        return max(0, body_sent - max(0, written - acked))


def counted(stream: trio.abc.Stream) -> Any:
    """``stream`` wrapped to count, if it is a plain socket stream; else itself."""
    if isinstance(stream, trio.SocketStream):
        return CountedStream(stream)
    return stream


__all__ = ["CountedStream", "Delivery", "bytes_acked", "counted"]
