"""The library's way into the local agent: an async (trio) client for the control socket.

Every call opens a connection to the agent's Unix socket, has one conversation and closes it;
errors arrive as the agent raised them, from :mod:`frumitcache.errors`. When no agent
listens, :class:`~frumitcache.errors.AgentUnavailableError` says so and how to start one —
the client never goes around the site to the origin on its own.
"""

from __future__ import annotations

import os
import socket as _socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import trio

from frumitcache.config import Config, find_config_file, load_config
from frumitcache.control._protocol import (
    Data,
    Failed,
    Message,
    Pull,
    PullDone,
    PullStarted,
    Status,
    StatusRequest,
)
from frumitcache.control._stream import MessageStream
from frumitcache.errors import AgentUnavailableError, ProtocolError


def default_socket() -> Path:
    """The control socket named by the config file in use (or the built-in default)."""
    return load_config(find_config_file()).socket_path


class PullStream:
    """The bytes of one object as the agent sends them, verified chunk by chunk."""

    def __init__(self, conn: MessageStream, started: PullStarted) -> None:
        self._conn = conn
        self.size = started.size
        self.source = started.source
        self.digest: bytes | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            msg = await self._conn.receive_required()
            if isinstance(msg, Data):
                yield msg.data
            elif isinstance(msg, PullDone):
                self.digest = msg.digest
                return
            elif isinstance(msg, Failed):
                raise msg.to_error()
            else:
                raise ProtocolError(f"unexpected {msg.tag} in a pull")


class AgentClient:
    """Talks to the agent at ``socket`` (default: the one the config file names)."""

    def __init__(self, socket: Path | str | None = None, *, config: Config | None = None) -> None:
        if socket is not None:
            self.socket = Path(socket)
        elif config is not None:
            self.socket = config.socket_path
        else:
            self.socket = default_socket()

    @asynccontextmanager
    async def _connect(self) -> AsyncIterator[MessageStream]:
        sock = trio.socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            await sock.connect(os.fspath(self.socket))
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise AgentUnavailableError(
                f"no frumitcache agent is listening on {self.socket}; start one with "
                "`frumitcache agent` (or `systemctl start frumitcache`)"
            ) from None
        except OSError as exc:
            sock.close()
            raise AgentUnavailableError(
                f"cannot reach the agent on {self.socket}: {exc.strerror or exc}"
            ) from None
        conn = MessageStream(trio.SocketStream(sock))
        try:
            yield conn
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def _ask(self, request: Message) -> Message:
        async with self._connect() as conn:
            await conn.send(request)
            reply = await conn.receive_required()
        if isinstance(reply, Failed):
            raise reply.to_error()
        return reply

    async def status(self) -> Status:
        reply = await self._ask(StatusRequest())
        if not isinstance(reply, Status):
            raise ProtocolError(f"unexpected {reply.tag} to a status request")
        return reply

    @asynccontextmanager
    async def pull(
        self, url: str, *, sha256: bytes | None = None, offset: int = 0
    ) -> AsyncIterator[PullStream]:
        """Stream the object at ``url`` through the agent::

        async with client.pull(url, sha256=digest) as stream:
            async for data in stream:
                ...
        """
        async with self._connect() as conn:
            await conn.send(Pull(url=url, sha256=sha256, offset=offset))
            first = await conn.receive_required()
            if isinstance(first, Failed):
                raise first.to_error()
            if not isinstance(first, PullStarted):
                raise ProtocolError(f"unexpected {first.tag} to a pull")
            yield PullStream(conn, first)
