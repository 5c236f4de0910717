"""Control messages over a trio byte stream (the Unix socket), for both ends."""

from __future__ import annotations

import math

import trio

from frumitcache.control._protocol import Decoder, Message, encode
from frumitcache.errors import ProtocolError

_READ = 256 * 1024


class MessageStream:
    """Sends and receives typed control messages on one connection."""

    def __init__(self, stream: trio.abc.Stream, *, send_timeout_s: float = math.inf) -> None:
        self._stream = stream
        # A peer that reads nothing for this long makes ``send`` raise trio.TooSlowError.
        self._send_timeout_s = send_timeout_s
        self._decoder = Decoder()
        self._pending: list[Message] = []
        self._broken = False

    async def send(self, msg: Message) -> None:
        if self._broken:
            raise trio.BrokenResourceError("an earlier send was interrupted mid-frame")
        try:
            with trio.fail_after(self._send_timeout_s):
                await self._stream.send_all(encode(msg))
        except BaseException:
            # Part of a frame may be on the wire; anything sent after it would be misread.
            self._broken = True
            raise

    async def receive(self) -> Message | None:
        """The next message, or ``None`` when the peer closed the connection cleanly."""
        while not self._pending:
            data = await self._stream.receive_some(_READ)
            if not data:
                return None
            self._decoder.feed(bytes(data))
            self._pending.extend(self._decoder)
        return self._pending.pop(0)

    async def receive_required(self) -> Message:
        msg = await self.receive()
        if msg is None:
            raise ProtocolError("connection closed in the middle of a conversation")
        return msg

    async def aclose(self) -> None:
        await self._stream.aclose()
