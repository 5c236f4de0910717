"""A lying BitTorrent peer for tests: claims every piece and answers requests with garbage.

Just enough of the wire protocol (BEP 3, plus the info-hash form of BEP 52 v2-only torrents)
for a libtorrent leecher that already holds the piece layer to download from it.
"""

from __future__ import annotations

import os
import struct

import trio


async def _read_exactly(stream: trio.SocketStream, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        data = await stream.receive_some(n - len(buf))
        if not data:
            raise EOFError
        buf += data
    return bytes(buf)


class LyingPeer:
    def __init__(self, info_hash_v2: bytes, num_pieces: int) -> None:
        self.info_hash = info_hash_v2[:20]  # v2-only torrents use the truncated SHA-256
        self.num_pieces = num_pieces
        self.blocks_sent = 0
        self.connections = 0
        self.lied = trio.Event()

    async def serve(
        self, address: str, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host=address)
        task_status.started(int(listeners[0].socket.getsockname()[1]))
        await trio.serve_listeners(self._handle, listeners)

    async def _handle(self, stream: trio.SocketStream) -> None:
        self.connections += 1
        try:
            async with stream:
                hs = await _read_exactly(stream, 68)
                if hs[28:48] != self.info_hash:
                    return
                await stream.send_all(
                    b"\x13BitTorrent protocol" + bytes(8) + self.info_hash + os.urandom(20)
                )
                bits = bytearray((self.num_pieces + 7) // 8)
                for i in range(self.num_pieces):
                    bits[i // 8] |= 0x80 >> (i % 8)
                await stream.send_all(struct.pack(">IB", 1 + len(bits), 5) + bytes(bits))
                await stream.send_all(struct.pack(">IB", 1, 1))  # unchoke
                while True:
                    (length,) = struct.unpack(">I", await _read_exactly(stream, 4))
                    if length == 0:
                        continue
                    body = await _read_exactly(stream, length)
                    if body[0] == 6 and length == 13:  # request: piece, offset, length
                        piece, offset, size = struct.unpack(">III", body[1:])
                        await stream.send_all(
                            struct.pack(">IBII", 9 + size, 7, piece, offset) + os.urandom(size)
                        )
                        self.blocks_sent += 1
                        self.lied.set()
        except (EOFError, trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            return
