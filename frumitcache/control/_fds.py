"""Descriptors that come with control frames (SCM_RIGHTS): how much room a receiver gives
them and how it takes them out of a ``recvmsg``'s ancillary data. Shared by the trio stream
and the blocking client; no I/O here."""

from __future__ import annotations

import socket
from array import array
from collections.abc import MutableSequence

from frumitcache.errors import ProtocolError

READ_SIZE = 256 * 1024  # bytes one receive asks for
FD_SIZE = array("i").itemsize
# Room for more descriptors than one frame carries, so a surplus is seen (and closed), never
# silently cut off by the kernel.
ANCILLARY = socket.CMSG_SPACE(8 * FD_SIZE)
RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)
#: ``sock.recvmsg(*RECVMSG_ARGS)``: one receive of frames and the descriptors that came along.
RECVMSG_ARGS = (READ_SIZE, ANCILLARY, RECV_FLAGS)


def take_descriptors(
    ancillary: list[tuple[int, int, bytes]], flags: int, into: MutableSequence[int]
) -> None:
    """Append the descriptors of one ``recvmsg`` to ``into`` (which then owns them); raise
    ProtocolError if the kernel had to cut some off."""
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % FD_SIZE])
            into.extend(fds)
    if flags & socket.MSG_CTRUNC:
        raise ProtocolError("the agent passed more descriptors than one frame carries")
