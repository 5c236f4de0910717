"""Small chunks over the peer HTTP port: the h11 server on trio (client: :mod:`._peer_client`).

A libtorrent transfer costs about a second of connect tick however small the chunk; a chunk up
to ``swarm.small_chunk_bytes`` is instead pulled with one HTTP request from a holder. Requests
are signed with the site key (:mod:`frumitcache._signing`); the server answers 403 to anything
unsigned or stale and counts it; unauthenticated connections are bounded by :class:`PeerLimits`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import h11
import trio

from frumitcache._digest import parse_digest
from frumitcache._log import Throttle, get_logger
from frumitcache._rate import TokenBucket
from frumitcache._sendfile import FileRange, send_body
from frumitcache.errors import FrumitcacheError, NotInStoreError, ProtocolError
from frumitcache.swarm._admission import PeerLimits
from frumitcache.swarm._merkle import MerkleTree
from frumitcache.swarm._peer_wire import (
    MAX_TREES,
    STATE_ABSENT,
    STATE_FETCHING,
    STATE_HELD,
    STATE_IDLE,
    pack_trees,
    send_simple,
)
from frumitcache.swarm._signed_port import RequestGate, serve_signed
from frumitcache.swarm._storeapi import ChunkStore

log = get_logger("swarm")

_PATH = re.compile(rb"^/chunk/([^/]*)(/tree|/verify|/state)?$")
_TREES = b"/trees/"
# Slowest receiver an unpaced body allows for (bytes/s) before the idle timeout ends it.
_FLOOR_RATE = 32 * 1024


class FetchActivity(Protocol):
    """What a node is fetching (:class:`~._fetch.ChunkFetcher`)."""

    def is_fetching(self, digest: bytes) -> bool: ...

    def is_busy(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class PeerHttpStatistics:
    served: int
    bytes_served: int
    not_found: int
    rejected: int
    #: Pre-auth connections closed to make room (cap) or to free a descriptor (EMFILE).
    evicted: int = 0
    #: accept() calls that failed for lack of descriptors or memory.
    accept_errors: int = 0


class PeerHttpServer:
    """Serves ``GET /chunk/<hex>`` from the store to site members holding the key.

    Three layers, kept apart so each can change alone: admission (:mod:`._admission`: the
    pre-auth cap, timeouts, accept back-off), the request loop and signature check
    (:func:`~._signed_port.serve_signed`, shared with the federation endpoint), and routing
    plus body writing (:meth:`_respond`, :meth:`_respond_chunk`). A request whose signature
    fails gets 403 and the connection is closed; only signed requests reach :meth:`_respond`.
    """

    quiet: tuple[type[Exception], ...] = ()  # nothing beyond serve_signed's own quiet endings

    def __init__(
        self,
        store: ChunkStore,
        key: bytes,
        *,
        upload_rate: int = 0,
        trees: Callable[[bytes], Awaitable[MerkleTree]] | None = None,
        clock: Callable[[], float] = time.time,
        limits: PeerLimits | None = None,
        max_clock_skew_s: float = 60.0,
        on_member: Callable[[str], None] | None = None,
    ) -> None:
        #: Called with a peer's IP once it made a signed request (it holds the site key).
        self.on_member = on_member
        #: What this node is fetching (set by the site link: ``/state`` answers from it).
        self.activity: FetchActivity | None = None
        self._store = store
        self._trees = trees
        self._gate = RequestGate(key, limits=limits, max_clock_skew_s=max_clock_skew_s, clock=clock)
        self.admission = self._gate.admission
        # Shared by all connections: the port's budget, not a per-connection one.
        self._bucket = TokenBucket(upload_rate)
        self._served = 0
        self._bytes = 0
        self._not_found = 0
        self._rejected = 0
        self._verify_lock = trio.Lock()
        #: Connections ended by an unexpected error (logged once a minute, not per error).
        self.errors = 0
        self._error_pace = Throttle()
        #: Chunks dropped from the store after a member reported them corrupt.
        self.dropped = 0

    def statistics(self) -> PeerHttpStatistics:
        return PeerHttpStatistics(
            self._served,
            self._bytes,
            self._not_found,
            self._rejected,
            self.admission.evicted,
            self.admission.accept_errors,
        )

    async def serve(
        self,
        address: str,
        port: int,
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``address:port`` until cancelled; reports the bound port."""
        listeners = await trio.open_tcp_listeners(port, host=address)
        bound = int(listeners[0].socket.getsockname()[1])
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self.admission.accept_loop, listener, self._handle, nursery)
            task_status.started(bound)

    async def _handle(self, stream: trio.SocketStream) -> None:
        await serve_signed(stream, self._gate, self)

    # --- the signed request loop's calls (a SignedHandler) --------------------------------

    async def refuse(self, conn: h11.Connection, stream: trio.SocketStream, _: h11.Request) -> None:
        self._rejected += 1
        await send_simple(conn, stream, 403, b"forbidden\n")

    def admitted(self, stream: trio.SocketStream) -> None:
        if self.on_member is not None:
            self.on_member(str(stream.socket.getpeername()[0]))

    async def answer(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        with IdleTimer(self.admission.limits.idle_timeout_s) as idle:
            await self._respond(conn, stream, req, idle)

    def connection_error(self, exc: Exception) -> None:
        """Log an unexpected error of one connection: a line a minute, with a count."""
        self.errors += 1
        if self._error_pace.admit("connection", trio.current_time()) is None:
            return
        log.error(
            "peer_http.connection_error", error=f"{type(exc).__name__}: {exc}", total=self.errors
        )

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request, idle: IdleTimer
    ) -> None:
        """Route one signed request. The paths name chunks in hex: a malformed name (or more
        than :data:`MAX_TREES` of them) is a bad request, answered 400."""
        if req.method == b"GET" and req.target.startswith(_TREES):
            names = req.target[len(_TREES) :].split(b",")
            many = [_digest(n) for n in names[:MAX_TREES]]
            if len(names) > MAX_TREES or None in many:
                await send_simple(conn, stream, 400, b"bad chunk digests\n")
                return
            await self._respond_trees(conn, stream, [d for d in many if d is not None])
            return
        m = _PATH.match(req.target)
        if m is None:
            await send_simple(conn, stream, 404, b"not found\n")
            return
        digest = _digest(m.group(1))
        if digest is None:
            await send_simple(conn, stream, 400, b"bad chunk digest\n")
            return
        if req.method == b"POST" and m.group(2) == b"/verify":
            await self._respond_verify(conn, stream, digest)
            return
        if req.method != b"GET" or m.group(2) == b"/verify":
            await send_simple(conn, stream, 404, b"not found\n")
            return
        if m.group(2) == b"/state":
            await send_simple(conn, stream, 200, self.chunk_state(digest))
            return
        if m.group(2):
            await self._respond_tree(conn, stream, digest)
            return
        await self._respond_chunk(conn, stream, digest, idle)

    async def _respond_chunk(
        self, conn: h11.Connection, stream: trio.SocketStream, digest: bytes, idle: IdleTimer
    ) -> None:
        """The chunk file as the body; ``idle`` ends a connection that stops taking bytes."""
        try:
            f = await trio.open_file(self._store.chunk_path(digest), "rb")
        except (OSError, NotInStoreError):
            self._not_found += 1
            await send_simple(conn, stream, 404, b"no such chunk\n")
            return
        async with f:
            size = os.fstat(f.fileno()).st_size
            head = h11.Response(
                status_code=200,
                headers=[
                    (b"content-length", str(size).encode()),
                    (b"content-type", b"application/octet-stream"),
                ],
            )
            await stream.send_all(conn.send(head) or b"")
            # Zero-copy: the kernel moves the chunk file to the socket. The receiver verifies
            # SHA-256 before it stores a byte (verify before serve holds at the other end).
            pace = None
            if self._bucket.rate:

                def pace(n: int) -> float:
                    idle.touch()
                    return self._bucket.take(n, trio.current_time())
            else:
                # Unpaced sendfile reports no progress: allow the body at a floor rate.
                idle.allow(size)
            try:
                await send_body(conn, stream, FileRange(f.fileno(), 0, size), pace=pace)
            except EOFError:
                return  # the file shrank under us (evicted and rewritten?): drop the connection
            sent = size
            await stream.send_all(conn.send(h11.EndOfMessage()) or b"")
        self._served += 1
        self._bytes += sent

    def chunk_state(self, digest: bytes) -> bytes:
        """``held``, ``fetching``, ``absent`` or ``idle``: a member waiting on this node for a
        chunk assigned to it asks before it turns to the seeder."""
        if self._store.has_chunk(digest):
            return STATE_HELD
        if self.activity is None:
            return STATE_IDLE
        if self.activity.is_fetching(digest):
            return STATE_FETCHING
        return STATE_ABSENT if self.activity.is_busy() else STATE_IDLE

    async def _respond_tree(
        self, conn: h11.Connection, stream: trio.SocketStream, digest: bytes
    ) -> None:
        """The chunk's pieces root and piece layer (what a libtorrent leecher needs)."""
        try:
            if self._trees is None:
                raise NotInStoreError("no trees here")
            tree = await self._trees(digest)
        except (FrumitcacheError, OSError):
            self._not_found += 1
            await send_simple(conn, stream, 404, b"no such chunk\n")
            return
        await send_simple(conn, stream, 200, tree.root + tree.piece_layer)

    async def _respond_trees(
        self, conn: h11.Connection, stream: trio.SocketStream, digests: list[bytes]
    ) -> None:
        """Many chunks' trees in one answer (a member about to fetch an object's chunks
        asks once, not once per chunk); a chunk not held here gets an empty entry."""
        trees: list[bytes | None] = []
        for digest in digests:
            tree = None
            if self._trees is not None:
                try:
                    got = await self._trees(digest)
                    tree = got.root + got.piece_layer
                except (FrumitcacheError, OSError):
                    self._not_found += 1
            trees.append(tree)
        await send_simple(conn, stream, 200, pack_trees(trees))

    async def _respond_verify(
        self, conn: h11.Connection, stream: trio.SocketStream, digest: bytes
    ) -> None:
        """A member got bytes from us that did not hash to ``digest``: re-check that chunk
        file (the store's read path drops it when corrupt). One at a time, so members can't
        make us hash more than one chunk at once."""
        state = b"absent"
        async with self._verify_lock:
            if self._store.has_chunk(digest):
                try:
                    await self._store.read_chunk(digest)
                    state = b"good"
                except NotInStoreError:
                    pass
                except (FrumitcacheError, OSError):
                    state = b"dropped"
                    self.dropped += 1
        if state == b"dropped":
            log.warning("peer_http.chunk_dropped", digest=digest, reason="reported corrupt")
        await send_simple(conn, stream, 200, state)


def _digest(name: bytes) -> bytes | None:
    """The chunk a path names in hex, or ``None`` when it is not 64 lower-case hex digits."""
    try:
        return parse_digest(name.decode("latin-1"), "chunk")
    except ProtocolError:
        return None


class IdleTimer:
    """A cancel scope that fires after ``timeout_s`` without a :meth:`touch` (no progress)."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout = timeout_s
        self._scope = trio.CancelScope()

    def touch(self) -> None:
        self._scope.deadline = trio.current_time() + self._timeout

    def allow(self, nbytes: int) -> None:
        """Room for ``nbytes`` more at :data:`_FLOOR_RATE` (a sender that can't :meth:`touch`)."""
        self._scope.deadline = trio.current_time() + self._timeout + nbytes / _FLOOR_RATE

    def __enter__(self) -> IdleTimer:
        self._scope.__enter__()
        self.touch()
        return self

    def __exit__(self, *exc: object) -> bool:
        handled = self._scope.__exit__(*exc)  # type: ignore[arg-type]
        if self._scope.cancelled_caught:
            raise trio.TooSlowError
        return bool(handled)
