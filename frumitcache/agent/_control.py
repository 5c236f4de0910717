"""The local control API: a Unix socket the CLI and the library talk msgpack over.

One connection carries one conversation at a time (request, replies, terminal reply) and may
carry several in turn. A malformed frame ends only that connection, with a ``Failed`` reply
when the socket still takes one; the agent carries on. Every connection is its own fault
domain: whatever escapes a handler (a bug, an input nobody foresaw) is logged (throttled),
answered with ``Failed`` where the socket still takes it, and never reaches the agent's
nursery.

Limits, because any member of the socket's group can connect: a connection that sends no
complete request, or reads nothing, for ``control.idle_timeout_s`` is closed; at most
``control.max_connections`` are open at once for ordinary users (root and the agent's own
user are never turned away, so the operator can always look in). Calls that destroy or read
what the caller could not otherwise touch — ``gc`` beyond the cap, ``import`` of a directory
— need root or the agent's own user, judged by the kernel's peer credentials
(``SO_PEERCRED``), never by anything the client says.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import trio

from frumitcache._log import Throttle, get_logger
from frumitcache.agent._content import ContentService
from frumitcache.agent._library import LibraryRequests
from frumitcache.config import ControlConfig
from frumitcache.control import (
    CacheListRequest,
    Data,
    EstimateRequest,
    Failed,
    FileData,
    GcRequest,
    ImportRequest,
    LocateRequest,
    Message,
    MessageStream,
    PinRequest,
    PrefetchRequest,
    Pull,
    PullDone,
    PullFiles,
    PullStarted,
    SiteRequest,
    Status,
    StatusRequest,
    VerifyRequest,
)
from frumitcache.errors import (
    AgentError,
    FrumitcacheError,
    NotPermittedError,
    ProtocolError,
    StoreError,
)
from frumitcache.store import HeldChunk

log = get_logger("control")

# Data frames are cut to this size so a slow client never forces the agent to hold a whole
# chunk in a socket buffer at once.
_DATA_FRAME = 256 * 1024
# While a pull passes descriptors, the connection's send buffer is cut to this (the kernel
# doubles it): a frame in flight holds its chunk file open, so a client that stops reading
# pins a handful of files, not hundreds, until the idle timeout ends it.
_FD_SNDBUF = 4096


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


def peer_uid(stream: trio.SocketStream) -> int | None:
    """The uid of the process at the other end of a Unix socket, from the kernel (Linux's
    ``SO_PEERCRED``); ``None`` where the platform cannot tell."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None
    try:
        raw = stream.socket.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    except OSError:
        return None
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


# Calls only root or the agent's own user may make: they evict what other users rely on, or
# make the agent read files (as itself) that the caller names. (request, is it privileged?)
_PRIVILEGED: dict[type[Message], Callable[[Any], bool]] = {
    GcRequest: lambda m: m.free > 0,  # gc to the cap is what the agent does anyway
    ImportRequest: lambda m: True,
}


class ControlServer:
    """Serves control conversations; ``status`` builds the agent's status reply."""

    def __init__(
        self,
        path: Path,
        content: ContentService,
        status: Callable[[], Status],
        limits: ControlConfig | None = None,
    ) -> None:
        self._path = path
        self._content = content
        self._status = status
        self._limits = limits or ControlConfig()
        self.library = LibraryRequests(content, status)
        self._crash_log = Throttle()
        self._open = 0  # connections of ordinary users, against control.max_connections
        self._own_uid = os.geteuid()
        self._handlers: dict[type[Message], Callable[[MessageStream, Message], Awaitable[None]]] = {
            Pull: self._pull,
            PullFiles: self._pull,
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
        uid = peer_uid(stream)
        trusted = uid is not None and uid in (0, self._own_uid)
        conn = MessageStream(stream, send_timeout_s=self._limits.idle_timeout_s)
        counted = not trusted
        if counted:
            self._open += 1
        try:
            if counted and self._open > self._limits.max_connections:
                self._refuse_busy(uid)
                err = AgentError("too many control connections open; try again shortly")
                with trio.move_on_after(1):
                    await conn.send(Failed.from_error(err))
                    # Until the client has written its request and closed: it reads why.
                    await conn.drain(limit=64 * 1024)
                return
            await self._converse(conn, trusted)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away; whatever it was reading is its loss, not ours
        except trio.TooSlowError:
            log.info("control.idle", uid=uid)  # an idle or stalled client: not worth a warning
        except Exception as exc:
            # A bug, or an input nobody foresaw: it ends this connection, never the agent.
            self._crashed(exc)
            reply = Failed.from_error(AgentError(f"internal error: {exc!r}"[:300]))
            with trio.move_on_after(1), contextlib.suppress(trio.BrokenResourceError):
                await conn.send(reply)
        finally:
            if counted:
                self._open -= 1
            with trio.CancelScope(shield=True):
                await conn.aclose()

    def _refuse_busy(self, uid: int | None) -> None:
        held = self._crash_log.admit("busy")
        if held is not None:
            log.warning(
                "control.busy",
                limit=self._limits.max_connections,
                uid=uid,
                suppressed=held,
            )

    def _crashed(self, exc: Exception) -> None:
        held = self._crash_log.admit(type(exc).__name__)
        if held is not None:
            log.error("control.crashed", detail=repr(exc)[:300], suppressed=held, exc_info=exc)

    async def _converse(self, conn: MessageStream, trusted: bool) -> None:
        while True:
            try:
                with trio.fail_after(self._limits.idle_timeout_s):
                    msg = await conn.receive()
            except ProtocolError as exc:
                held = self._crash_log.admit("bad-frame")
                if held is not None:
                    log.warning("control.bad-frame", detail=str(exc), suppressed=held)
                await conn.send(Failed.from_error(exc))
                return
            if msg is None:
                return
            handler = self._handlers.get(type(msg))
            if handler is None:
                await conn.send(Failed.from_error(ProtocolError(f"{msg.tag} is not a request")))
                return
            privileged = _PRIVILEGED.get(type(msg))
            if not trusted and privileged is not None and privileged(msg):
                err = NotPermittedError(
                    f"{msg.tag} needs root or the agent's own user (uid {self._own_uid}); "
                    "run it with sudo"
                )
                log.info("request.refused", request=msg.tag, error=err.code)
                await conn.send(Failed.from_error(err))
                continue
            await handler(conn, msg)

    async def _status_request(self, conn: MessageStream, msg: Message) -> None:
        await conn.send(self._status())

    async def _pull(self, conn: MessageStream, msg: Message) -> None:
        """``Pull``: the verified bytes in Data frames. ``PullFiles``: the same delivery as
        descriptors of the chunk files (FileData), each checked as it is opened; the bytes
        never pass through the agent or the socket."""
        assert isinstance(msg, Pull | PullFiles)
        if msg.sha256 is not None and len(msg.sha256) != 32:
            await conn.send(Failed.from_error(ProtocolError("sha256 must be 32 bytes")))
            return
        sent = 0
        try:
            async with self._content.open(msg.url, sha256=msg.sha256, offset=msg.offset) as opened:
                if opened.size is not None and msg.offset > opened.size:
                    raise StoreError(f"offset {msg.offset} is past the end ({opened.size} bytes)")
                await conn.send(PullStarted(size=opened.size, source=opened.source))
                if isinstance(msg, PullFiles):
                    sent = await _send_files(conn, opened.files)
                else:
                    sent = await _send_data(conn, opened.chunks)
                digest = self._content.lookup(msg.url, msg.sha256)
        except FrumitcacheError as exc:
            log.info("pull.failed", url=msg.url, error=exc.code, detail=str(exc))
            await conn.send(Failed.from_error(exc))
            return
        if digest is None:  # the object vanished between the last byte and now (evicted)
            await conn.send(Failed.from_error(AgentError("object was evicted while being sent")))
            return
        if sent == 0 and opened.size is None and msg.offset > 0:
            # A live object whose size was unknown at the start: the offset may be past its end.
            manifest = self._content.store.lookup(digest)
            if manifest is not None and msg.offset > manifest.size:
                err = StoreError(f"offset {msg.offset} is past the end ({manifest.size} bytes)")
                await conn.send(Failed.from_error(err))
                return
        self.library.bytes_served += sent
        self.library.served_by[opened.source] = self.library.served_by.get(opened.source, 0) + sent
        if opened.source not in ("origin", "federation"):  # federation bytes cross the uplink
            self.library.bytes_spared += sent
        files = isinstance(msg, PullFiles)
        via = {"via": opened.via} if opened.via else {}
        log.info("pull.done", url=msg.url, bytes=sent, source=opened.source, **via, files=files)
        await conn.send(PullDone(digest=digest, size=msg.offset + sent))


async def _send_data(conn: MessageStream, chunks: AsyncIterator[bytes]) -> int:
    sent = 0
    async for chunk in chunks:
        view = memoryview(chunk)
        for start in range(0, len(view), _DATA_FRAME):
            await conn.send(Data(bytes(view[start : start + _DATA_FRAME])))
        sent += len(chunk)
    return sent


async def _send_files(conn: MessageStream, files: AsyncIterator[HeldChunk]) -> int:
    sock = conn.socket
    default = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _FD_SNDBUF)
    sent = 0
    try:
        async for held in files:
            try:
                await conn.send(FileData(skip=held.skip, count=held.count), fd=held.fd)
            finally:
                held.close()  # the client has its own reference now (or the send failed)
            sent += held.count
    finally:
        # The kernel reports the doubled size it applied; it doubles what we set back, too.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, default // 2)
    return sent


async def _now(reply: Message) -> Message:
    return reply
