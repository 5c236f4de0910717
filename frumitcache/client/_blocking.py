"""The command line's way into the agent without trio: one blocking conversation per call.

``frumitcache pull`` and ``status`` run one conversation and exit, and on a Pi model B
importing trio is a third of what a pull costs (the agent shares that core). So they talk
over a plain socket: the framing is :mod:`frumitcache.control._protocol`'s, the pull's
rules are :class:`~frumitcache.client._receiver.PullReceiver`'s (the same object
:meth:`AgentClient.pull_into` drives), and only the reading and writing is here. Ctrl-C
interrupts a blocking receive as any other: the caller removes what was written.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path

from frumitcache.client._copy import copy_range
from frumitcache.client._pull import RESTARTS, PullOutcome, rewind, unavailable, write_all
from frumitcache.client._receiver import (
    CopyFile,
    Finished,
    PullReceiver,
    Retry,
    Started,
    Write,
)
from frumitcache.control import (
    RECVMSG_ARGS,
    Decoder,
    Failed,
    Message,
    encode,
    take_descriptors,
)
from frumitcache.errors import FetchRestartedError, ProtocolError


class Connection:
    """One blocking conversation on the control socket; ``receive_fds``: take the
    descriptors that come with frames (:meth:`take_fds`)."""

    def __init__(self, sock: socket.socket, *, receive_fds: bool = False) -> None:
        self._sock = sock
        self._decoder = Decoder()
        self._pending: deque[Message] = deque()
        self._receive_fds = receive_fds
        self._fds: list[int] = []

    def send(self, msg: Message) -> None:
        self._sock.sendall(encode(msg))

    def receive(self) -> Message:
        """The next message; ProtocolError if the agent closes the connection first."""
        while not self._pending:
            data, ancillary, flags, _ = self._sock.recvmsg(*RECVMSG_ARGS)
            take_descriptors(ancillary, flags, self._fds)
            if not self._receive_fds:  # not asked for (a plain recv would have dropped them)
                self._close_fds()
            if not data:
                raise ProtocolError("connection closed in the middle of a conversation")
            self._decoder.feed(data)
            self._pending.extend(self._decoder)
        return self._pending.popleft()

    def take_fds(self) -> list[int]:
        """Every descriptor received and not taken yet, in order; the caller owns them."""
        fds, self._fds = self._fds, []
        return fds

    def _close_fds(self) -> None:
        for fd in self.take_fds():
            with contextlib.suppress(OSError):
                os.close(fd)

    def close(self) -> None:
        self._close_fds()
        self._sock.close()


@contextlib.contextmanager
def connect(path: Path, *, receive_fds: bool = False) -> Iterator[Connection]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.fspath(path))
    except OSError as exc:
        sock.close()
        raise unavailable(path, exc) from None
    conn = Connection(sock, receive_fds=receive_fds)
    try:
        yield conn
    finally:
        conn.close()


def ask_blocking(path: Path, request: Message) -> Message:
    """One request, one reply (an agent's Failed raised as its error)."""
    with connect(path) as conn:
        conn.send(request)
        reply = conn.receive()
    if isinstance(reply, Failed):
        raise reply.to_error()
    return reply


def _ignore(n: int | None) -> None:
    pass


def pull_into_blocking(
    path: Path,
    url: str,
    out: int,
    *,
    sha256: bytes | None = None,
    files: bool = True,
    started: Callable[[int | None], None] = _ignore,
    advance: Callable[[int], None] = _ignore,
) -> PullOutcome:
    """:meth:`AgentClient.pull_into`, blocking, for the agent on the socket at ``path``.

    When the agent drops what it sent (a federation link's bytes failed the object's SHA-256,
    or the site changed its listing, and it fetches the object again:
    :class:`FetchRestartedError`), ``out`` is emptied and the pull asked again, with ``files``
    only: ``out`` is then the caller's own new file (stdout, perhaps a file appended to, is
    never truncated)."""
    for attempt in range(RESTARTS + 1):
        try:
            outcome = _pull_once(
                path, PullReceiver(url, sha256=sha256, files=files), out, started, advance
            )
            if outcome is None:  # an agent older than PullFiles: Data frames
                outcome = _pull_once(
                    path, PullReceiver(url, sha256=sha256, files=False), out, started, advance
                )
        except FetchRestartedError:
            if attempt == RESTARTS or not files or not rewind(out):
                raise
            continue
        assert outcome is not None
        return outcome
    raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover


def _pull_once(
    path: Path,
    receiver: PullReceiver,
    out: int,
    started: Callable[[int | None], None],
    advance: Callable[[int], None],
) -> PullOutcome | None:
    with connect(path, receive_fds=receiver.files) as conn:
        try:
            conn.send(receiver.request())
            while True:
                msg = conn.receive()
                receiver.add_fds(conn.take_fds())
                action = receiver.receive(msg)
                if isinstance(action, CopyFile):
                    try:
                        copy_range(action.fd, out, action.skip, action.count)
                    finally:
                        os.close(action.fd)
                    advance(action.count)
                elif isinstance(action, Write):
                    write_all(out, action.data)
                    advance(len(action.data))
                elif isinstance(action, Started):
                    started(action.size)
                elif isinstance(action, Retry):
                    return None
                elif isinstance(action, Finished):
                    return action.outcome
        finally:
            for fd in receiver.unclaimed_fds():
                with contextlib.suppress(OSError):
                    os.close(fd)
