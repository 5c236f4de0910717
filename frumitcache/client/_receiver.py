"""The client's side of one pull into a file, without I/O: the protocol rules of a pull.

Both drivers — :meth:`AgentClient.pull_into` (trio) and the blocking pull of the command line
(:mod:`._blocking`, which spares a Pi trio's import) — send :meth:`PullReceiver.request`, then
feed each frame that arrives (and first the descriptors that came with it, in order) to
:meth:`PullReceiver.receive` and carry out the action it returns. Anything a well-behaved
agent does not send raises :class:`~frumitcache.errors.ProtocolError` (or the agent's own
error, or :class:`~frumitcache.errors.DigestMismatchError`); the driver then discards what was
written and closes the descriptors :meth:`PullReceiver.unclaimed_fds` gives back.

Trust: with ``files`` the bytes are the agent's verified chunk files (see
:mod:`frumitcache.client._pull`) and nothing is hashed here; the object's size and the
digest the agent reports must still add up. Data frames (an older agent, or stdout) are
hashed as they arrive and must match the agent's digest and ``sha256``.
"""

from __future__ import annotations

import enum
import hashlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from frumitcache.client._pull import PullOutcome, check_digest
from frumitcache.control import (
    Data,
    Failed,
    FileData,
    Message,
    Pull,
    PullDone,
    PullFiles,
    PullStarted,
)
from frumitcache.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Started:
    """The agent answered: ``size`` (when known) and where it gets the object."""

    size: int | None
    source: str


@dataclass(frozen=True, slots=True)
class Retry:
    """The agent is older than PullFiles: ask again, with Pull, on a new connection."""


@dataclass(frozen=True, slots=True)
class CopyFile:
    """Append ``count`` bytes of ``fd`` from ``skip`` to the output; the driver now owns
    ``fd`` and closes it after the copy."""

    fd: int
    skip: int
    count: int


@dataclass(frozen=True, slots=True)
class Write:
    """Append ``data`` to the output."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Finished:
    """The whole object is written and checked out."""

    outcome: PullOutcome


Action = Started | Retry | CopyFile | Write | Finished


class _State(enum.Enum):
    ASKED = "asked"  # waiting for PullStarted
    RECEIVING = "receiving"
    DONE = "done"  # Finished or Retry returned, or an error raised: nothing more is taken


class PullReceiver:
    """One pull of ``url`` into a file; ``files``: ask for the agent's chunk files
    (PullFiles; the socket must take descriptors), else for Data frames (Pull)."""

    def __init__(self, url: str, *, sha256: bytes | None = None, files: bool = True) -> None:
        self.url = url
        self.files = files
        self._wanted = sha256
        self._state = _State.ASKED
        self._size: int | None = None
        self._source = ""
        self._written = 0
        self._hasher = None if files else hashlib.sha256()
        self._fds: deque[int] = deque()

    def request(self) -> Message:
        if self.files:
            return PullFiles(url=self.url, sha256=self._wanted)
        return Pull(url=self.url, sha256=self._wanted)

    def add_fds(self, fds: Iterable[int]) -> None:
        """Descriptors received (in order) with the frames not fed yet; this object holds them
        until a FileData frame claims one."""
        self._fds.extend(fds)

    def unclaimed_fds(self) -> list[int]:
        """Descriptors no frame claimed (the driver closes them); this object forgets them."""
        fds = list(self._fds)
        self._fds.clear()
        return fds

    def receive(self, msg: Message) -> Action:
        """The next frame of the conversation, and what to do about it."""
        state, self._state = self._state, _State.DONE  # until this frame checked out
        if state is _State.ASKED:
            action = self._answer(msg)
        elif state is _State.RECEIVING:
            action = self._body(msg)
        else:
            raise ProtocolError(f"{self.url}: {msg.tag} after the pull ended")
        if not isinstance(action, Finished | Retry):
            self._state = _State.RECEIVING
        return action

    def _answer(self, msg: Message) -> Action:
        if isinstance(msg, PullStarted):
            self._size = msg.size
            self._source = msg.source
            return Started(msg.size, msg.source)
        if isinstance(msg, Failed) and self.files and msg.code == ProtocolError.code:
            return Retry()
        if isinstance(msg, Failed):
            raise msg.to_error()
        raise ProtocolError(f"{self.url}: unexpected {msg.tag} to a pull")

    def _body(self, msg: Message) -> Action:
        if isinstance(msg, FileData) and self.files:
            if not self._fds:
                raise ProtocolError(f"{self.url}: a file-data frame arrived without its descriptor")
            self._grow(msg.count)
            return CopyFile(self._fds.popleft(), msg.skip, msg.count)
        if isinstance(msg, Data):
            self._grow(len(msg.data))
            if self._hasher is not None:
                self._hasher.update(msg.data)
            return Write(msg.data)
        if isinstance(msg, PullDone):
            return Finished(self._done(msg))
        if isinstance(msg, Failed):
            raise msg.to_error()
        raise ProtocolError(f"{self.url}: unexpected {msg.tag} in a pull")

    def _grow(self, n: int) -> None:
        self._written += n
        if self._size is not None and self._written > self._size:
            raise ProtocolError(
                f"{self.url}: the agent sent {self._written} bytes of a {self._size}-byte object"
            )

    def _done(self, msg: PullDone) -> PullOutcome:
        if self._fds:
            raise ProtocolError(f"{self.url}: the agent passed a descriptor without a frame")
        if msg.size != self._written:
            raise ProtocolError(
                f"{self.url}: the agent sent {self._written} bytes of a {msg.size}-byte object"
            )
        if self._hasher is None:
            check_digest(self.url, msg.digest, None, self._wanted)
            digest = msg.digest
        else:
            digest = self._hasher.digest()
            check_digest(self.url, digest, msg.digest, self._wanted)
        return PullOutcome(self._written, digest, self._source, files=self.files)
