"""The local control API: a Unix socket the CLI and the library talk msgpack over.

One connection carries one conversation at a time (request, replies, terminal reply) and may
carry several in turn. A malformed frame ends only that connection, with a ``Failed`` reply
when the socket still takes one; the agent carries on.
"""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from frumitcache._log import get_logger
from frumitcache.agent._content import ContentService
from frumitcache.agent._library import LibraryRequests
from frumitcache.control._protocol import (
    CacheListRequest,
    Data,
    EstimateRequest,
    Failed,
    GcRequest,
    ImportRequest,
    LocateRequest,
    Message,
    PinRequest,
    PrefetchRequest,
    Pull,
    PullDone,
    PullStarted,
    SiteRequest,
    Status,
    StatusRequest,
    VerifyRequest,
)
from frumitcache.control._stream import MessageStream
from frumitcache.errors import AgentError, FrumitcacheError, ProtocolError

log = get_logger("control")

# Data frames are cut to this size so a slow client never forces the agent to hold a whole
# chunk in a socket buffer at once.
_DATA_FRAME = 256 * 1024


async def bind_control_socket(path: Path) -> trio.SocketListener:
    """Listen on ``path``, replacing a stale socket file but never a live agent's."""
    await trio.Path(path.parent).mkdir(parents=True, exist_ok=True)
    if await trio.Path(path).exists():
        probe = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            await probe.connect(os.fspath(path))
        except OSError:
            await trio.Path(path).unlink()  # nobody answers: a leftover from a killed agent
        else:
            raise AgentError(f"another agent already listens on {path}")
        finally:
            probe.close()
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        await sock.bind(os.fspath(path))
    except OSError as exc:
        sock.close()
        if exc.errno in (errno.EACCES, errno.EROFS):
            raise AgentError(f"cannot create control socket {path}: {exc.strerror}") from None
        raise
    os.chmod(path, 0o660)
    sock.listen(64)
    return trio.SocketListener(sock)


class ControlServer:
    """Serves control conversations; ``status`` builds the agent's status reply."""

    def __init__(self, path: Path, content: ContentService, status: Callable[[], Status]) -> None:
        self._path = path
        self._content = content
        self._status = status
        self.library = LibraryRequests(content, status)
        self._handlers: dict[type[Message], Callable[[MessageStream, Message], Awaitable[None]]] = {
            Pull: self._pull,
            StatusRequest: self._status_request,
        }
        lib = self.library
        # One-reply requests of the library: (request type, how to build the reply).
        answers: dict[type[Message], Callable[[Any], Awaitable[Message]]] = {
            PrefetchRequest: lambda m: lib.prefetch(m.url, m.sha256, m.nodes),
            PinRequest: lambda m: _now(lib.pin(m.target, m.pinned)),
            LocateRequest: lambda m: lib.locate(m.target),
            SiteRequest: lambda m: _now(lib.site()),
            EstimateRequest: lambda m: lib.estimate(m.urls),
            CacheListRequest: lambda m: _now(lib.cache_list()),
            VerifyRequest: lambda m: lib.verify(),
            GcRequest: lambda m: lib.gc(m.free),
            ImportRequest: lambda m: lib.import_debs(m.directory),
        }
        for kind, answer in answers.items():
            self._handlers[kind] = self._one_reply(answer)

    @staticmethod
    def _one_reply(
        answer: Callable[[Any], Awaitable[Message]],
    ) -> Callable[[MessageStream, Message], Awaitable[None]]:
        async def handle(conn: MessageStream, msg: Message) -> None:
            try:
                reply = await answer(msg)
            except FrumitcacheError as exc:
                log.info("request.failed", request=msg.tag, error=exc.code, detail=str(exc))
                reply = Failed.from_error(exc)
            except Exception as exc:
                # A bug in one request must not take the agent down with it.
                log.error("request.crashed", request=msg.tag, detail=repr(exc), exc_info=exc)
                reply = Failed.from_error(AgentError(f"internal error in {msg.tag}: {exc!r}"))
            await conn.send(reply)

        return handle

    async def serve(self, *, task_status: trio.TaskStatus[Path] = trio.TASK_STATUS_IGNORED) -> None:
        listener = await bind_control_socket(self._path)
        try:
            async with trio.open_nursery() as nursery:
                task_status.started(self._path)
                await trio.serve_listeners(self._connection, [listener], handler_nursery=nursery)
        finally:
            with trio.CancelScope(shield=True):
                await listener.aclose()
                self._path.unlink(missing_ok=True)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = MessageStream(stream)
        try:
            while True:
                try:
                    msg = await conn.receive()
                except ProtocolError as exc:
                    log.warning("control.bad-frame", detail=str(exc))
                    await conn.send(Failed.from_error(exc))
                    return
                if msg is None:
                    return
                handler = self._handlers.get(type(msg))
                if handler is None:
                    await conn.send(Failed.from_error(ProtocolError(f"{msg.tag} is not a request")))
                    return
                await handler(conn, msg)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; whatever it was reading is its loss, not ours
        finally:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    async def _status_request(self, conn: MessageStream, msg: Message) -> None:
        await conn.send(self._status())

    async def _pull(self, conn: MessageStream, msg: Message) -> None:
        assert isinstance(msg, Pull)
        if msg.sha256 is not None and len(msg.sha256) != 32:
            await conn.send(Failed.from_error(ProtocolError("sha256 must be 32 bytes")))
            return
        sent = 0
        try:
            async with self._content.open(msg.url, sha256=msg.sha256, offset=msg.offset) as opened:
                await conn.send(PullStarted(size=opened.size, source=opened.source))
                async for chunk in opened.chunks:
                    view = memoryview(chunk)
                    for start in range(0, len(view), _DATA_FRAME):
                        await conn.send(Data(bytes(view[start : start + _DATA_FRAME])))
                    sent += len(chunk)
                digest = self._content.lookup(msg.url, msg.sha256)
        except FrumitcacheError as exc:
            log.info("pull.failed", url=msg.url, error=exc.code, detail=str(exc))
            await conn.send(Failed.from_error(exc))
            return
        if digest is None:  # the object vanished between the last byte and now (evicted)
            await conn.send(Failed.from_error(AgentError("object was evicted while being sent")))
            return
        self.library.bytes_served += sent
        if opened.source != "origin":
            self.library.bytes_spared += sent
        log.info("pull.done", url=msg.url, bytes=sent, source=opened.source)
        await conn.send(PullDone(digest=digest, size=msg.offset + sent))


async def _now(reply: Message) -> Message:
    return reply
