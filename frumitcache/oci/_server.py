"""The registry mirror's HTTP side: a read-only OCI distribution API on h11 and trio.

``GET``/``HEAD`` of ``/v2/``, ``/v2/<name>/manifests/<tag|digest>`` and
``/v2/<name>/blobs/<digest>``; every success carries ``Docker-Content-Digest``, ``Content-Type``
and ``Content-Length``, blobs honour one ``Range``. Anything that cannot be served is answered
at once with the spec's JSON error (404 for what is not here, so containerd goes to its next
host without waiting), and the connection carries on. One task per connection in the
listener's nursery; a request head must arrive within ``oci.header_timeout_s``, an idle
keep-alive connection is closed after ``oci.idle_timeout_s``.
"""

from __future__ import annotations

import contextlib
import math

import h11
import trio

from frumitcache._log import Throttle, get_logger
from frumitcache.config import OciConfig, Registry, parse_registries
from frumitcache.content import open_piece, plan_response, send_piece
from frumitcache.errors import (
    DigestMismatchError,
    FrumitcacheError,
    NotAllowedError,
    OriginStatusError,
    OriginUnreachableError,
)
from frumitcache.oci._authhook import RegistryAuth
from frumitcache.oci._metrics import RegistryMetrics
from frumitcache.oci._names import ApiRoot, Ask, parse_request
from frumitcache.oci._prefetch import Prefetcher
from frumitcache.oci._source import Opened, RegistryContent, RegistryError
from frumitcache.oci._spec import ApiError, accepted_manifest_types

log = get_logger("oci")

_RECEIVE = 65536
_API_VERSION = ("Docker-Distribution-API-Version", "registry/2.0")


class _Closed(Exception):
    """The connection must end now (client gone, bad framing, timeout)."""


def error_for(exc: FrumitcacheError, ask: Ask) -> ApiError:
    """What the client is told when the source could not serve ``ask``."""
    unknown = "MANIFEST_UNKNOWN" if ask.kind == "manifests" else "BLOB_UNKNOWN"
    if isinstance(exc, RegistryError):
        return exc.error
    if isinstance(exc, NotAllowedError):
        return ApiError("DENIED", str(exc), 403)
    if isinstance(exc, OriginStatusError):
        # The registry's Retry-After (a 429's, a 503's) reaches the client as the registry
        # sent it, whichever node's uplink client heard it (it crosses the site with the error).
        later = (("Retry-After", exc.retry_after),) if exc.retry_after else ()
        told = f"{ask.registry.name} answered {exc.status}"
        if exc.retry_after:
            told += f"; retry after {exc.retry_after}"
        if exc.status == 404:
            return ApiError(unknown, f"{ask.registry.name} has no {ask.reference}", 404)
        if exc.status in (401, 403, 429):
            code = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}[exc.status]
            return ApiError(code, told, exc.status, later)
        # Other statuses (a 503 among them) stay a fast 404 so containerd tries its next host
        # (1.6 falls back on 404 only); the registry's Retry-After rides along.
        return ApiError(unknown, told, 404, later)
    if isinstance(exc, DigestMismatchError):
        return ApiError(unknown, "upstream bytes do not match the digest; refused", 404)
    if isinstance(exc, OriginUnreachableError):
        return ApiError(unknown, f"{ask.registry.name} is unreachable and no copy is held", 404)
    # Fast and honest: a 404 lets containerd go on to its next host now.
    return ApiError(unknown, f"cannot serve: {type(exc).__name__}", 404)


async def send(conn: h11.Connection, stream: trio.SocketStream, event: h11.Event) -> None:
    await stream.send_all(conn.send(event) or b"")


async def simple_error(
    conn: h11.Connection, stream: trio.SocketStream, status: int, text: str
) -> None:
    """A last answer before closing, if the connection can still take one."""
    if conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
        return
    body = text.encode()
    headers = [("Content-Length", str(len(body))), ("Connection", "close")]
    with contextlib.suppress(h11.LocalProtocolError, trio.BrokenResourceError):
        await send(conn, stream, h11.Response(status_code=status, headers=headers))
        await send(conn, stream, h11.Data(data=body))
        await send(conn, stream, h11.EndOfMessage())


def _one(headers: dict[str, list[str]], name: str) -> str | None:
    """A header that must appear once; repeated (ambiguous) counts as absent."""
    values = headers.get(name, [])
    return values[0] if len(values) == 1 else None


class RegistryMirror:
    """The door. Run :meth:`serve` in a nursery; it reports ``(host, port)``."""

    def __init__(
        self,
        config: OciConfig,
        source: RegistryContent,
        *,
        metrics: RegistryMetrics | None = None,
    ) -> None:
        self.config = config
        self.source = source
        self.registries: dict[str, Registry] = parse_registries(config.registries)
        self.metrics = metrics if metrics is not None else RegistryMetrics()
        self.auth: RegistryAuth | None = None  # the token hook, for its counters
        self.prefetch = Prefetcher(source) if config.prefetch_blobs else None
        self._throttle = Throttle()

    async def serve(
        self,
        listeners: list[trio.SocketListener] | None = None,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled on ``listeners`` (bound by the caller), else on
        ``oci.listen:oci.port``."""
        if listeners is None:
            listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.listen)
        sockname = listeners[0].socket.getsockname()
        async with trio.open_nursery() as nursery:
            if self.prefetch is not None:
                nursery.start_soon(self.prefetch.run)
            task_status.started((str(sockname[0]), int(sockname[1])))
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                try:
                    stream = await listener.accept()
                except OSError as exc:  # out of descriptors: survive, pause, retry
                    self._log_once("accept", f"oci.accept_failed error={exc!r}")
                    await trio.sleep(0.1)
                    continue
                nursery.start_soon(self._connection, stream)

    def _log_once(self, key: str, text: str) -> None:
        held = self._throttle.admit(key, trio.current_time())
        if held is not None:
            log.warning(text, suppressed=held)

    async def _connection(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=self.config.max_header_bytes)
        try:
            while True:
                request = await self._next_request(conn, stream)
                if request is None:
                    return
                await self._drain(conn, stream)
                await self._respond(conn, stream, request)
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (_Closed, trio.BrokenResourceError, trio.ClosedResourceError):
            return
        except Exception as exc:
            # A bug costs one connection, never the door.
            self.metrics.internal_errors += 1
            self._log_once("bug", f"oci.connection_failed error={exc!r}")
            with trio.move_on_after(1):
                await simple_error(conn, stream, 500, "internal error\n")
        finally:
            with trio.move_on_after(1) as cs:
                cs.shield = True
                await stream.aclose()

    async def _next_request(
        self, conn: h11.Connection, stream: trio.SocketStream
    ) -> h11.Request | None:
        idle_deadline = trio.current_time() + self.config.idle_timeout_s
        head_deadline = math.inf
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await simple_error(conn, stream, exc.error_status_hint, "malformed request\n")
                return None
            if isinstance(event, h11.Request):
                size = len(event.target) + sum(len(k) + len(v) + 4 for k, v in event.headers)
                if size > self.config.max_header_bytes:
                    await simple_error(conn, stream, 431, "request head too large\n")
                    return None
                return event
            if event is not h11.NEED_DATA:
                return None
            with trio.move_on_at(min(idle_deadline, head_deadline)):
                data = await stream.receive_some(_RECEIVE)
                if data and head_deadline == math.inf:
                    head_deadline = trio.current_time() + self.config.header_timeout_s
                conn.receive_data(data)
                continue
            return None  # idle, or a head dribbled too slowly: close

    async def _drain(self, conn: h11.Connection, stream: trio.SocketStream) -> None:
        with trio.move_on_after(self.config.header_timeout_s):
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError:
                    raise _Closed from None
                if isinstance(event, h11.EndOfMessage):
                    return
                if isinstance(event, h11.ConnectionClosed):
                    raise _Closed
                if event is h11.NEED_DATA:
                    conn.receive_data(await stream.receive_some(_RECEIVE))
        raise _Closed

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, request: h11.Request
    ) -> None:
        method = request.method.decode("ascii", "replace").upper()
        kind, status = "other", 405
        if method not in ("GET", "HEAD"):
            error = ApiError("UNSUPPORTED", "this mirror is read-only: GET and HEAD only")
            status = await self._error(conn, stream, method, error, [("Allow", "GET, HEAD")])
            self.metrics.requests[("other", kind, status)] += 1
            return
        if request.target == b"/metrics":
            self.metrics.token_requests = self.auth.book.requests if self.auth else 0
            body = self.metrics.render().encode()
            status = await self._plain(conn, stream, method, 200, body, "text/plain; version=0.0.4")
            self.metrics.requests[(method, "metrics", status)] += 1
            return
        asked = parse_request(request.target, self.registries)
        if isinstance(asked, ApiRoot):
            kind, status = "root", await self._plain(conn, stream, method, 200, b"{}")
        elif isinstance(asked, ApiError):
            kind, status = "invalid", await self._error(conn, stream, method, asked)
        else:
            kind = asked.kind
            status = await self._serve(conn, stream, method, request, asked)
        self.metrics.requests[(method, kind, status)] += 1

    async def _serve(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        request: h11.Request,
        ask: Ask,
    ) -> int:
        headers: dict[str, list[str]] = {}
        for name, value in request.headers:
            headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
        try:
            if ask.kind == "manifests":
                accept = accepted_manifest_types(headers.get("accept", []))
                opened = await self.source.manifest(ask, accept)
            else:
                opened = await self.source.blob(ask)
        except FrumitcacheError as exc:
            error = error_for(exc, ask)
            log.info(
                "oci.refused", method=method, url=ask.url, status=error.http_status, why=str(exc)
            )
            return await self._error(conn, stream, method, error)
        etag = f'"{opened.digest}"'
        plan = plan_response(
            size=opened.size,
            last_modified=None,
            etag=etag,
            range_header=_one(headers, "range") if ask.kind == "blobs" else None,
            if_range=_one(headers, "if-range"),
            if_modified_since=None,
            if_none_match=_one(headers, "if-none-match"),
        )
        out = [
            _API_VERSION,
            ("Docker-Content-Digest", opened.digest),
            ("ETag", etag),
            *plan.headers,
        ]
        if ask.kind == "manifests":
            self.metrics.served_manifest(opened.source)
            if method == "GET" and plan.status == 200 and self.prefetch and opened.body:
                # The client is pulling this image: its blobs go upstream now, not when asked.
                self.prefetch.manifest_served(ask, opened.body, opened.media_type)
        if plan.status == 304:
            await send(conn, stream, h11.Response(status_code=304, headers=out))
            await send(conn, stream, h11.EndOfMessage())
            return 304
        if plan.status == 416:
            bad = ApiError("BLOB_UNKNOWN", "requested range not satisfiable", 416)
            return await self._error(conn, stream, method, bad, list(plan.headers))
        start, end, status = plan.start, plan.end, plan.status
        if ask.kind == "blobs":
            out.append(("Accept-Ranges", "bytes"))
        out += [("Content-Type", opened.media_type), ("Content-Length", str(end - start))]
        head = h11.Response(status_code=status, headers=out)
        if method == "HEAD" or start == end:
            await send(conn, stream, head)
            await send(conn, stream, h11.EndOfMessage())
            return status
        return await self._body(conn, stream, method, ask, opened, head, start, end)

    async def _body(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        ask: Ask,
        opened: Opened,
        head: h11.Response,
        start: int,
        end: int,
    ) -> int:
        sent_head = False
        try:
            async with opened.read(start, end) as pieces:
                async for piece in pieces:
                    async with open_piece(piece) as body:
                        if not sent_head:
                            await send(conn, stream, head)
                            sent_head = True
                        await send_piece(conn, stream, body)
                    self.metrics.bytes_served[opened.source] += len(piece)
        except EOFError as exc:
            log.warning("oci.broken_body", url=ask.url, error=str(exc))
            raise _Closed from None
        except FrumitcacheError as exc:
            if not sent_head:
                return await self._error(conn, stream, method, error_for(exc, ask))
            log.warning("oci.broken_body", url=ask.url, error=str(exc))
            raise _Closed from None
        if not sent_head:
            await send(conn, stream, head)
        try:
            await send(conn, stream, h11.EndOfMessage())
        except h11.LocalProtocolError:
            log.warning("oci.short_body", url=ask.url)
            raise _Closed from None
        return head.status_code

    async def _error(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        error: ApiError,
        extra: list[tuple[str, str]] | None = None,
    ) -> int:
        return await self._plain(
            conn,
            stream,
            method,
            error.http_status,
            error.body(),
            extra=[*(extra or []), *error.headers],
        )

    async def _plain(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        method: str,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        *,
        extra: list[tuple[str, str]] | None = None,
    ) -> int:
        headers = [
            _API_VERSION,
            *(extra or []),
            ("Content-Type", content_type),
            ("Content-Length", str(len(body))),
        ]
        await send(conn, stream, h11.Response(status_code=status, headers=headers))
        if method != "HEAD":
            await send(conn, stream, h11.Data(data=body))
        await send(conn, stream, h11.EndOfMessage())
        return status
