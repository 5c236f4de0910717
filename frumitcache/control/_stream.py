"""Control messages over a trio byte stream (the Unix socket), for both ends.

A :class:`~frumitcache.control.FileData` frame travels with one descriptor (SCM_RIGHTS) in the
same ``sendmsg``. The kernel hands a sendmsg's descriptors to the ``recvmsg`` that reads its
first byte, and never mixes two senders' worth into one ``recvmsg``; so a receiver that keeps
the descriptors in arrival order pairs each with its frame by order alone.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
from array import array
from collections import deque

import trio

from frumitcache.control._fds import ANCILLARY, READ_SIZE, RECV_FLAGS, take_descriptors
from frumitcache.control._protocol import Decoder, Message, encode
from frumitcache.errors import ProtocolError


class MessageStream:
    """Sends and receives typed control messages on one connection.

    With ``receive_fds`` it also takes the descriptors that come with frames
    (:meth:`take_fds`); descriptors nobody took are closed with the stream."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        send_timeout_s: float = math.inf,
        receive_fds: bool = False,
    ) -> None:
        self._stream = stream
        # A peer that reads nothing for this long makes ``send`` raise trio.TooSlowError.
        self._send_timeout_s = send_timeout_s
        self._decoder = Decoder()
        self._pending: list[Message] = []
        self._broken = False
        self._receive_fds = receive_fds
        self._fds: deque[int] = deque()

    @property
    def socket(self) -> trio.socket.SocketType:
        if not isinstance(self._stream, trio.SocketStream):
            raise ProtocolError("descriptors travel only over a socket")
        return self._stream.socket

    async def send(self, msg: Message, *, fd: int | None = None) -> None:
        """Send ``msg``; with ``fd``, pass that descriptor along with it (SCM_RIGHTS; the
        caller still owns and closes its own copy)."""
        if self._broken:
            raise trio.BrokenResourceError("an earlier send was interrupted mid-frame")
        frame = encode(msg)
        try:
            with trio.fail_after(self._send_timeout_s):
                if fd is None:
                    await self._stream.send_all(frame)
                else:
                    await self._send_with_fd(frame, fd)
        except BaseException:
            # Part of a frame may be on the wire; anything sent after it would be misread.
            self._broken = True
            raise

    async def _send_with_fd(self, frame: bytes, fd: int) -> None:
        rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array("i", [fd]).tobytes())]
        try:
            sent = await self.socket.sendmsg([frame], rights)
        except (BrokenPipeError, ConnectionError) as exc:
            raise trio.BrokenResourceError(str(exc)) from exc
        if sent < len(frame):  # the descriptor went with the first byte; the rest follows
            await self._stream.send_all(frame[sent:])

    async def receive(self) -> Message | None:
        """The next message, or ``None`` when the peer closed the connection cleanly."""
        while not self._pending:
            data = await self._receive_some()
            if not data:
                return None
            self._decoder.feed(bytes(data))
            self._pending.extend(self._decoder)
        return self._pending.pop(0)

    async def _receive_some(self) -> bytes:
        if not self._receive_fds:
            return bytes(await self._stream.receive_some(READ_SIZE))
        data, ancillary, flags, _ = await self.socket.recvmsg(READ_SIZE, ANCILLARY, RECV_FLAGS)
        take_descriptors(ancillary, flags, self._fds)
        return data

    async def drain(self, limit: int) -> None:
        """Read and drop what the peer sends until it closes or ``limit`` bytes came (bound
        it with a timeout): closing on a peer that is still writing its request fails that
        write (EPIPE), and the peer never reads the reply already sent."""
        left = limit
        while left > 0:
            data = await self._receive_some()
            if not data:
                return
            left -= len(data)

    def take_fds(self) -> list[int]:
        """Every descriptor received and not taken yet, in order; the caller owns them."""
        fds = list(self._fds)
        self._fds.clear()
        return fds

    async def receive_required(self) -> Message:
        msg = await self.receive()
        if msg is None:
            raise ProtocolError("connection closed in the middle of a conversation")
        return msg

    async def aclose(self) -> None:
        while self._fds:
            with contextlib.suppress(OSError):
                os.close(self._fds.popleft())
        await self._stream.aclose()
