"""The apt proxy: HTTP/1.1 (h11) on trio, apt-cacher-ng's port and conventions.

One task per connection, owned by the listener nursery; requests on a connection are answered
in order (h11 buffers pipelined ones). Per request: the target is resolved and checked
(:mod:`._requests`), the expected SHA-256 looked up in the hashes learned from served indexes
(:mod:`._packages`), the content opened through the seam (:mod:`frumitcache.content`) with
apt's freshness policy (:mod:`._policy`), the answer planned by the seam's pure HTTP rules.

Bytes go out as the source releases them (cut-through); headers are sent only once the first
piece is in hand, so a failure before any byte (404, unreachable, digest mismatch) gets an
honest status and a text body instead of a broken transfer.
"""

from __future__ import annotations

import errno
import math
import time
from collections.abc import Callable

import h11
import trio

from frumitcache._log import get_logger
from frumitcache._version import __version__
from frumitcache.apt._guard import PendingConnections, RateLimitedLog
from frumitcache.apt._learn import Learner
from frumitcache.apt._packages import HashBook, index_role
from frumitcache.apt._policy import open_target, request_for
from frumitcache.apt._requests import (
    FileKind,
    Rejection,
    Target,
    parse_target,
)
from frumitcache.apt._status import (
    METRIC_SOURCE,
    ProxyMetrics,
    SiteStatus,
    render_metrics,
    render_status_page,
)
from frumitcache.apt._tunnel import tunnel
from frumitcache.apt._wire import content_type, lower, reason, send, simple_error, source_error
from frumitcache.config import AptConfig
from frumitcache.content import (
    Content,
    ContentSource,
    TunnelOpener,
    http_date,
    open_piece,
    parse_http_date,
    plan_response,
    send_head,
    send_piece,
)
from frumitcache.errors import DigestMismatchError, FrumitcacheError

log = get_logger("apt")

_RECEIVE = 65536
_CAPACITY_ERRNOS = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}
_EVICT_ON_EMFILE = 8  # pending connections closed per failed accept, to free descriptors
_ACCEPT_BACKOFF_S = 0.1


class _ConnectionDone(Exception):
    """The connection must close now (client gone, timeout, unrecoverable state)."""


class AptProxy:
    """The drop-in apt proxy. Run :meth:`serve` in a nursery; it reports ``(host, port)``."""

    def __init__(
        self,
        config: AptConfig,
        source: ContentSource,
        *,
        hashes: HashBook | None = None,
        status: Callable[[], SiteStatus] | None = None,
        tunnels: TunnelOpener | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self._tunnels = tunnels  # CONNECT's upstream, through the uplink client
        self.metrics = ProxyMetrics()
        self._status = status or SiteStatus
        self._errors = RateLimitedLog(log)
        self._learner = Learner(hashes, self.metrics, self._errors)
        self._pending = PendingConnections(config.max_pending_connections)
        self._nursery: trio.Nursery | None = None

    async def serve(
        self, *, task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen on ``apt.listen:apt.port`` and serve until cancelled."""
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.listen)
        sockname = listeners[0].socket.getsockname()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started((str(sockname[0]), int(sockname[1])))
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        """Accept connections for ever. Out of descriptors (EMFILE, ...) is survived: the oldest
        connections still without a request are closed, and accepting resumes after a pause,
        with one log line per minute rather than a traceback per attempt."""
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:
                    self.metrics.accept_errors += 1
                    self._errors.exception(
                        "accept",
                        f"apt proxy cannot accept connections: {exc.strerror or exc!r}; "
                        f"closing idle ones and retrying",
                        exc,
                        trio.current_time(),
                        traceback=exc.errno not in _CAPACITY_ERRNOS,
                    )
                    self.metrics.connections_dropped += self._pending.evict(_EVICT_ON_EMFILE)
                    await trio.sleep(_ACCEPT_BACKOFF_S)
                    continue
                nursery.start_soon(self._connection, stream)

    # --- one connection ------------------------------------------------------------------------

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.max_header_bytes)
        # Until its first request a connection is pending: bounded in time and in number.
        first = trio.CancelScope(deadline=trio.current_time() + self.config.first_request_timeout_s)
        key, pushed_out = self._pending.add(first)
        self.metrics.connections_dropped += pushed_out
        try:
            with first:
                request = await self._next_request(conn, stream)
            self._pending.remove(key)
            if first.cancelled_caught:
                if first.deadline <= trio.current_time():
                    self.metrics.connections_dropped += 1  # pushed-out ones were counted
                return
            while True:
                if request is None:
                    return
                if request.http_version not in (b"1.0", b"1.1"):
                    self.metrics.rejected[505] += 1
                    await self._simple_error(conn, stream, 505, "only HTTP/1.0 and 1.1 here\n")
                    return
                if request.method == b"CONNECT":
                    allowed = self.config.connect_allowed_hosts
                    await tunnel(conn, stream, request, allowed, self._tunnels, self.metrics)
                    return
                await self._drain_body(conn, stream)
                await self._respond(conn, stream, request)
                if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
                    conn.start_next_cycle()
                else:
                    return
                request = await self._next_request(conn, stream)
        except _ConnectionDone:
            return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except Exception as exc:
            # A bug must cost one connection, never the proxy; and a client repeating the
            # request that hits it must not fill the log.
            self.metrics.internal_errors += 1
            self._errors.exception(
                "connection", f"apt proxy connection failed: {exc!r}", exc, trio.current_time()
            )
            with trio.move_on_after(1):
                await self._simple_error(conn, stream, 500, "internal error in the proxy\n")
        finally:
            self._pending.remove(key)
            with trio.move_on_after(1) as cs:
                cs.shield = True
                await stream.aclose()

    async def _next_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> h11.Request | None:
        """The next request head, within the idle and header deadlines; None when done."""
        idle_deadline = trio.current_time() + self.config.idle_timeout_s
        head_deadline = math.inf
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._protocol_error(conn, stream, exc)
                return None
            if isinstance(event, h11.Request):
                # h11 only bounds heads still incomplete in its buffer; one that arrived whole
                # in a single read is measured here.
                size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
                if size > self.config.max_header_bytes:
                    self.metrics.rejected[431] += 1
                    self.metrics.requests[("?", 431)] += 1
                    await self._simple_error(conn, stream, 431, "request head too large\n")
                    return None
                return event
            if event is h11.NEED_DATA:
                deadline = min(idle_deadline, head_deadline)
                data = b""
                with trio.move_on_at(deadline):
                    data = await stream.receive_some(_RECEIVE)
                    if head_deadline == math.inf and data:
                        head_deadline = trio.current_time() + self.config.header_timeout_s
                    conn.receive_data(data)
                    if not data:
                        continue  # h11 now reports ConnectionClosed or an error
                    continue
                # Timed out: idle keep-alive, or a client dribbling its head (slow-loris).
                if head_deadline != math.inf and conn.their_state is h11.IDLE:
                    self.metrics.rejected[408] += 1
                    await self._simple_error(
                        conn, stream, 408, "request head not received in time\n"
                    )
                return None
            return None  # ConnectionClosed, PAUSED (we never leave a request unanswered)

    async def _drain_body(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        """Read and drop a request body (GET/HEAD bodies carry nothing we use)."""
        try:
            first = conn.next_event()
        except h11.RemoteProtocolError as exc:
            with trio.move_on_after(self.config.header_timeout_s):
                await self._protocol_error(conn, stream, exc)
            raise _ConnectionDone from None
        if isinstance(first, h11.EndOfMessage):
            return  # no body, as apt sends: no deadline to set up
        if isinstance(first, h11.ConnectionClosed):
            raise _ConnectionDone
        with trio.move_on_after(self.config.header_timeout_s) as cs:
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    await self._protocol_error(conn, stream, exc)
                    raise _ConnectionDone from None
                if isinstance(event, h11.EndOfMessage):
                    return
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(_RECEIVE))
                elif isinstance(event, h11.ConnectionClosed):
                    raise _ConnectionDone
        if cs.cancelled_caught:
            raise _ConnectionDone

    async def _protocol_error(
        self, conn: h11.Connection, stream: trio.SocketStream, exc: h11.RemoteProtocolError
    ) -> None:
        status = exc.error_status_hint
        text = "request head too large\n" if status == 431 else f"malformed request: {exc}\n"
        self.metrics.rejected[status] += 1
        self.metrics.requests[("?", status)] += 1
        await self._simple_error(conn, stream, status, text)

    # --- GET / HEAD ----------------------------------------------------------------------------

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request
    ) -> None:
        method = request.method.decode("ascii", "replace").upper()
        status = await self._dispatch(conn, stream, request, method)
        self.metrics.requests[(method if method in ("GET", "HEAD") else "other", status)] += 1

    async def _dispatch(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request, method: str
    ) -> int:
        if method not in ("GET", "HEAD"):
            return await self._text(
                conn,
                stream,
                method,
                405,
                f"method {method} is not supported by this proxy\n",
                extra=[("Allow", "GET, HEAD, CONNECT")],
            )
        target = request.target
        if target in (b"/", b"/index.html"):
            return await self._status_page(conn, stream, method)
        if target == b"/metrics":
            return await self._text(
                conn,
                stream,
                method,
                200,
                render_metrics(self.metrics, self._status()),
                content_type="text/plain; version=0.0.4; charset=utf-8",
            )
        resolved = parse_target(target, self.config.allowed_hosts)
        if isinstance(resolved, Rejection):
            self.metrics.rejected[resolved.status] += 1
            return await self._text(conn, stream, method, resolved.status, resolved.reason + "\n")
        return await self._proxy(conn, stream, request, method, resolved)

    async def _proxy(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        request: h11.Request,
        method: str,
        target: Target,
    ) -> int:
        expected_sha, expected_size = target.by_hash_sha256, None
        if target.by_hash is not None and self._learner.book is not None:
            await self._learner.wait_idle()  # a Release being learned names this file
            named = self._learner.by_hash.get(target.by_hash)
            if named is not None and expected_sha is None:
                expected_sha = named[1]
        # InRelease/Release are the roots of trust: never pinned to an older Release's hashes.
        pinnable = target.kind is not FileKind.INDEX or index_role(target.url) != "release"
        if expected_sha is None and self._learner.book is not None and pinnable:
            await self._learner.wait_idle()
            known = self._learner.book.lookup(target.url)
            if known is not None:
                expected_sha, expected_size = known.sha256, known.size
        try:
            wanted = request_for(target, expected_sha, expected_size)
            content = await open_target(self.source, target, wanted)
        except FrumitcacheError as exc:
            return await self._source_error(conn, stream, method, target, exc)

        info = content.info
        log.debug(
            "apt.served", method=method, url=target.url, bytes=info.size, source=info.provenance
        )
        learn = self._learner.wanted(target, info)
        if learn is not None and self._nursery is not None:
            self._learner.start(self._nursery, learn[1], learn[0], content)

        headers = {lower(k): v.decode("latin-1") for k, v in request.headers}
        last_modified = parse_http_date(info.meta.last_modified)
        plan = plan_response(
            size=info.size,
            last_modified=last_modified,
            etag=info.meta.etag,
            range_header=headers.get("range") if method == "GET" else None,
            if_range=headers.get("if-range"),
            if_modified_since=headers.get("if-modified-since"),
            if_none_match=headers.get("if-none-match"),
        )
        if info.provenance == "local":
            self.metrics.hits += 1
        else:
            self.metrics.misses += 1
        out: list[tuple[str, str]] = [("Date", http_date(time.time()))]
        if last_modified is not None:
            out.append(("Last-Modified", http_date(last_modified)))
        if info.meta.etag is not None:
            out.append(("ETag", info.meta.etag))
        if plan.status == 304:
            await send(conn, stream, h11.Response(status_code=304, headers=out, reason=reason(304)))
            await send(conn, stream, h11.EndOfMessage())
            return 304
        out += list(plan.headers)
        if plan.status == 416:
            return await self._text(
                conn, stream, method, 416, "requested range not satisfiable\n", extra=out
            )
        out += [
            ("Content-Type", info.meta.content_type or content_type(target.path)),
            ("Content-Length", str(plan.end - plan.start)),
            ("Accept-Ranges", "bytes"),
        ]
        if method == "HEAD" or plan.end == plan.start:
            head = h11.Response(status_code=plan.status, headers=out, reason=reason(plan.status))
            await send(conn, stream, head)
            await send(conn, stream, h11.EndOfMessage())
            return plan.status
        return await self._body(
            conn, stream, method, target, content, plan.status, out, plan.start, plan.end
        )

    async def _body(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        target: Target,
        content: Content,
        status: int,
        headers: list[tuple[str, str]],
        start: int,
        end: int,
    ) -> int:
        source = METRIC_SOURCE[content.info.provenance]
        head = h11.Response(status_code=status, headers=headers, reason=reason(status))
        sent_head = False
        try:
            # Complete chunks go out with sendfile (zero-copy); an object still arriving as
            # verified bytes (cut-through).
            async with content.read_files(start, end) as pieces:
                async for piece in pieces:
                    async with open_piece(piece) as body:
                        if not sent_head:
                            await send_head(conn, stream, head, body)
                            sent_head = True
                        await send_piece(conn, stream, body)
                    self.metrics.bytes_served[source] += len(piece)
        except EOFError as exc:
            log.warning("apt.send-failed", url=target.url, detail=str(exc))
            raise _ConnectionDone from None
        except FrumitcacheError as exc:
            if not sent_head:
                return await self._source_error(conn, stream, method, target, exc)
            log.warning("apt.failed-part-way", url=target.url, detail=str(exc))
            if isinstance(exc, DigestMismatchError):
                self.metrics.digest_mismatches += 1
            raise _ConnectionDone from None
        if not sent_head:
            await send(conn, stream, head)
        try:
            await send(conn, stream, h11.EndOfMessage())
        except h11.LocalProtocolError:
            # The source yielded fewer bytes than its size: never let apt take a short file.
            log.warning("apt.ended-short", url=target.url)
            raise _ConnectionDone from None
        return status

    async def _source_error(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        target: Target,
        exc: FrumitcacheError,
    ) -> int:
        if isinstance(exc, DigestMismatchError):
            self.metrics.digest_mismatches += 1
        status, text = source_error(exc, target.url)
        log.info("apt.error", method=method, url=target.url, status=status, detail=str(exc))
        return await self._text(conn, stream, method, status, text)

    async def _status_page(
        self, conn: h11.Connection, stream: trio.SocketStream, method: str
    ) -> int:
        try:
            site = self._status()
        except Exception:  # the page must render even if the agent's status callable fails
            log.error("apt.status-failed", exc_info=True)
            site = SiteStatus()
        page = render_status_page(site, self.metrics, version=__version__)
        # apt-cacher-ng answers its root with "406 Usage Information"; auto-apt-proxy looks
        # for exactly that, so the page is served with it.
        return await self._text(
            conn,
            stream,
            method,
            406,
            page,
            content_type="text/html; charset=utf-8",
            reason=b"Usage Information",
        )

    async def _text(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        status: int,
        text: str,
        *,
        content_type: str = "text/plain; charset=utf-8",
        extra: list[tuple[str, str]] | None = None,
        reason: bytes = b"",
    ) -> int:
        body = text.encode()
        headers = [
            *(extra or []),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
        ]
        await send(conn, stream, h11.Response(status_code=status, headers=headers, reason=reason))
        if method != "HEAD":
            await send(conn, stream, h11.Data(data=body))
        await send(conn, stream, h11.EndOfMessage())
        return status

    async def _simple_error(
        self, conn: h11.Connection, stream: trio.SocketStream, status: int, text: str
    ) -> None:
        await simple_error(conn, stream, status, text)
