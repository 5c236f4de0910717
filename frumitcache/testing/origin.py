"""A real HTTP/1.1 origin server (trio + h11) for tests and benchmarks, misbehaving on demand.

It serves named files (bytes added with :meth:`OriginServer.add`, made on the fly with
:meth:`~OriginServer.add_generated`, or files under a directory) with Content-Length, ETag,
Last-Modified, Range (206/416), conditional requests (304), If-Range, HEAD and keep-alive.
A global rate limit shared by every connection models a slow site uplink. Per path, a
:class:`Fault` makes it misbehave: an error status, a body cut short (closed or reset), a
stall, a Content-Length lie, a slow drip, a redirect, Range ignored, or the content replaced
after a response. It counts requests and body bytes sent per path, so a test can assert that
the origin served each file once, and how many of those bytes each client's TCP acknowledged
(``bytes_delivered``: what crossed, not what sat in the origin's socket when a client stopped
reading; testing/_delivered.py).

In a test::

    server = OriginServer()
    server.add("/a.bin", data)
    port = await nursery.start(server.serve, address)
    ... server.url("/a.bin") ... server.stats.bytes_sent["/a.bin"] ...

As a process (multi-process tests, benchmarks)::

    python -m frumitcache.testing.origin --address 127.0.0.2 --port 0 --dir DIR [--rate B/S]
        [--generate /big.bin=50GiB:7] [--generate /disk.img=50GiB:7:1GiB]
        [--tls-cert CERT.pem --tls-key KEY.pem]

prints ``{"port": N}`` once listening; ``GET /_stats`` answers the counts as JSON (with
``log``: each request's method, path, client address, Range, status, bytes sent and
delivered),
``POST /_fault`` with ``{"path": "/x", "fault": {...} | null}`` sets a fault and
``POST /_reset`` clears the counts.

HTTPS: ``serve(address, ssl_context=server_ssl_context(cert, key))`` (or ``--tls-cert`` and
``--tls-key``) wraps every connection in TLS; everything else behaves the same.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import hashlib
import json
import socket
import ssl
import struct
import sys
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h11
import trio

from frumitcache.origin import TokenBucket
from frumitcache.testing._delivered import CountedStream, Delivery, counted
from frumitcache.testing._h11io import peer_of, read_request, reason, send, send_simple, socket_of
from frumitcache.testing._resource import (
    PIECE,
    Resource,
    http_date,
    if_range_holds,
    not_modified,
    parse_range,
)
from frumitcache.testing._stats import RequestRecord, ServerStats
from frumitcache.testing.generated import Generated, parse_spec


@dataclass(frozen=True, slots=True)
class Fault:
    """How a path misbehaves. Offsets count body bytes of the one response they apply to."""

    status: int | None = None  # answer this status (404, 500, 503, ...) with a short text body
    retry_after: str | None = None  # with ``status``: the answer's Retry-After header
    truncate_at: int | None = None  # send this many body bytes, then close (FIN)
    drop_at: int | None = None  # send this many body bytes, then reset the connection (RST)
    stall_at: int | None = None  # send this many body bytes, then send nothing more
    content_length: int | None = None  # announce this Content-Length on a 200, send the real body
    drip_rate: int | None = None  # send this response's body at this many bytes/s
    redirect: str | None = None  # answer 302 with this Location (a path or a URL)
    ignore_range: bool = False  # answer a Range request with 200 and the full body
    replace_with: bytes | None = None  # after this response the content is these bytes
    times: int | None = None  # apply to this many requests, then behave; None means always
    then: Fault | None = None  # the fault that follows once ``times`` is used up

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Fault:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        values = dict(data)
        if isinstance(values.get("replace_with"), str):
            values["replace_with"] = values["replace_with"].encode()
        if isinstance(values.get("then"), Mapping):
            values["then"] = cls.from_json(values["then"])
        return cls(**values)


def server_ssl_context(certfile: Path | str, keyfile: Path | str) -> ssl.SSLContext:
    """A server-side TLS context presenting ``certfile`` (PEM chain) with ``keyfile``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


class OriginServer:
    """The origin; see the module docstring. ``rate`` (bytes/s, 0 = unlimited) is shared."""

    def __init__(self, root: Path | str | None = None, *, rate: int = 0) -> None:
        self.root = Path(root).resolve() if root is not None else None
        self.stats = ServerStats()
        self.address = ""
        self.port = 0
        self.tls = False  # serving HTTPS (``serve`` was given an ``ssl_context``)
        self._files: dict[str, Resource] = {}
        self._faults: dict[str, Fault] = {}
        self._fault_uses: Counter[str] = Counter()
        self._bucket = TokenBucket(rate, max(PIECE, rate / 10)) if rate else None

    # --- content and faults ------------------------------------------------------------------

    def add(self, path: str, data: bytes, **headers: str | None) -> None:
        """Serve ``data`` at ``path``; adding again replaces it (new ETag, later Last-Modified).

        Keyword headers are sent with it (``content_type="text/plain"``); ``etag=None`` or
        ``last_modified=None`` removes a validator.
        """
        previous = self._files.get(path)
        mtime = float(int(time.time()))
        if previous is not None and mtime <= previous.mtime:
            mtime = previous.mtime + 1  # validators must change even within one second
        digest = hashlib.sha256(data).hexdigest()[:24]
        extra = {k.replace("_", "-").lower(): v for k, v in headers.items()}
        etag = extra.pop("etag", f'"{digest}-{int(mtime)}"')
        last_modified = extra.pop("last-modified", http_date(mtime))
        self._files[path] = Resource(
            size=len(data),
            etag=etag,
            last_modified=last_modified,
            mtime=mtime,
            headers={k: v for k, v in extra.items() if v is not None},
            data=bytes(data),
        )

    def add_generated(self, path: str, body: Generated) -> None:
        """Serve ``body`` (bytes made on the fly, any size) at ``path``."""
        sparse = f"-{body.every:x}-{body.run:x}" if body.every else ""
        etag = f'"gen-{body.seed:x}-{body.size:x}{sparse}"'
        self._files[path] = Resource(body.size, etag, http_date(0), 0.0, {}, generated=body)

    def remove(self, path: str) -> None:
        self._files.pop(path, None)

    def misbehave(self, path: str, fault: Fault | None) -> None:
        """Set (or with ``None`` clear) the fault of ``path``."""
        self._fault_uses.pop(path, None)
        if fault is None:
            self._faults.pop(path, None)
        else:
            self._faults[path] = fault

    def url(self, path: str) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{host}:{self.port}{path}"

    def _resource(self, path: str) -> Resource | None:
        if path in self._files:
            return self._files[path]
        if self.root is None:
            return None
        candidate = (self.root / urllib.parse.unquote(path).lstrip("/")).resolve()
        if not candidate.is_relative_to(self.root) or not candidate.is_file():
            return None
        st = candidate.stat()
        return Resource(
            size=st.st_size,
            etag=f'"{st.st_ino:x}-{st.st_size:x}-{st.st_mtime_ns:x}"',
            last_modified=http_date(st.st_mtime),
            mtime=st.st_mtime,
            headers={},
            file=candidate,
        )

    def _take_fault(self, path: str) -> Fault | None:
        fault = self._faults.get(path)
        if fault is None:
            return None
        self._fault_uses[path] += 1
        if fault.times is not None and self._fault_uses[path] >= fault.times:
            self.misbehave(path, fault.then)
        return fault

    # --- serving -----------------------------------------------------------------------------

    async def serve(
        self,
        address: str,
        port: int = 0,
        *,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``address:port`` (0 picks one), report the port, serve until cancelled.

        With ``ssl_context`` (a server context, see :func:`server_ssl_context`) it speaks HTTPS:
        every accepted connection is wrapped in a server-side :class:`trio.SSLStream`.
        """
        tcp = await trio.open_tcp_listeners(port, host=address)
        self.address = address
        self.port = int(tcp[0].socket.getsockname()[1])
        listeners: list[trio.abc.Listener[Any]] = list(tcp)
        if ssl_context is not None:
            self.tls = True
            # https_compatible: clients that close without TLS close_notify are normal.
            listeners = [trio.SSLListener(t, ssl_context, https_compatible=True) for t in tcp]
        task_status.started(self.port)
        await trio.serve_listeners(self._connection, listeners)

    async def _connection(self, stream: trio.abc.Stream) -> None:
        stream = counted(stream)
        conn = h11.Connection(h11.SERVER)
        self.stats.connections += 1
        try:
            while True:
                request, body = await read_request(conn, stream)
                if request is None:
                    return
                if not await self._respond(conn, stream, request, body):
                    return
                if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError, OSError):
            return  # with TLS this includes a failed handshake (a client not trusting us)
        finally:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await stream.aclose()

    async def _respond(
        self, conn: h11.Connection, stream: trio.abc.Stream, request: h11.Request, body: bytes
    ) -> bool:
        """Answer one request; False when the connection must end now."""
        method = request.method.decode("ascii", "replace").upper()
        target = request.target.decode("ascii", "replace")
        path = urllib.parse.urlsplit(target).path or "/"
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in request.headers}
        if path in ("/_stats", "/_fault", "/_reset"):
            return await self._control(conn, stream, method, path, body)
        self.stats.requests[path] += 1
        entry = RequestRecord(method, path, target, headers, peer=peer_of(stream))
        if isinstance(stream, CountedStream):
            entry.delivery = Delivery(stream)
        self.stats.log.append(entry)

        def record(n: int) -> None:
            entry.bytes_sent += n
            self.stats.bytes_sent[path] += n

        fault = self._take_fault(path)
        resource = self._resource(path)
        try:
            entry.status, keep = await self._answer(
                conn, stream, method, headers, resource, fault, record, entry
            )
        finally:
            if entry.delivery is not None:
                entry.delivery.end()
            if fault is not None and fault.replace_with is not None:
                self.add(path, fault.replace_with)
        return keep

    async def _answer(
        self,
        conn: h11.Connection,
        stream: trio.abc.Stream,
        method: str,
        headers: dict[str, str],
        resource: Resource | None,
        fault: Fault | None,
        record: Callable[[int], None],
        entry: RequestRecord,
    ) -> tuple[int, bool]:
        if fault is not None and fault.status is not None:
            later = [("Retry-After", fault.retry_after)] if fault.retry_after else []
            await send_simple(conn, stream, fault.status, record, method, later)
            return fault.status, True
        if fault is not None and fault.redirect is not None:
            extra = [("Location", fault.redirect)]
            await send_simple(conn, stream, 302, record, method, extra)
            return 302, True
        if method not in ("GET", "HEAD"):
            await send_simple(conn, stream, 405, record, method, [("Allow", "GET, HEAD")])
            return 405, True
        if resource is None:
            await send_simple(conn, stream, 404, record, method)
            return 404, True

        validators: list[tuple[str, str]] = []
        if resource.etag:
            validators.append(("ETag", resource.etag))
        if resource.last_modified:
            validators.append(("Last-Modified", resource.last_modified))
        if not_modified(headers, resource):
            unchanged = h11.Response(status_code=304, headers=validators, reason=b"Not Modified")
            await send(conn, stream, unchanged)
            await send(conn, stream, h11.EndOfMessage())
            return 304, True

        start, end, status = 0, resource.size, 200
        range_header = headers.get("range")
        if (
            range_header
            and method == "GET"
            and not (fault and fault.ignore_range)
            and if_range_holds(headers.get("if-range"), resource)
        ):
            parsed = parse_range(range_header, resource.size)
            if parsed == "unsatisfiable":
                extra = [("Content-Range", f"bytes */{resource.size}")]
                await send_simple(conn, stream, 416, record, method, extra)
                return 416, True
            if isinstance(parsed, tuple):
                start, end = parsed
                status = 206

        out = [
            ("Content-Type", resource.headers.get("content-type", "application/octet-stream")),
            ("Accept-Ranges", "bytes"),
            *validators,
            *((k, v) for k, v in resource.headers.items() if k != "content-type"),
        ]
        announced = end - start
        if status == 206:
            out.append(("Content-Range", f"bytes {start}-{end - 1}/{resource.size}"))
        elif fault is not None and fault.content_length is not None:
            announced = fault.content_length
        out.append(("Content-Length", str(announced)))
        phrase = reason(status).encode()
        entry.status = status  # now, for whoever looks while the body goes out
        await send(conn, stream, h11.Response(status_code=status, headers=out, reason=phrase))
        if method == "HEAD":
            await send(conn, stream, h11.EndOfMessage())
            return status, True

        # Where the body stops short, and how the connection ends then.
        cut, how = end - start, "done"
        if fault is not None:
            for at, mode in (
                (fault.truncate_at, "close"),
                (fault.drop_at, "reset"),
                (fault.stall_at, "stall"),
            ):
                if at is not None and at < cut:
                    cut, how = at, mode
        raw = announced < end - start  # a lie h11 refuses to tell: write past it by hand
        if how == "done" and announced != end - start:
            how = "close"
        drip = TokenBucket(fault.drip_rate, PIECE) if fault and fault.drip_rate else None

        async with contextlib.aclosing(resource.pieces(start, start + cut)) as pieces:
            async for piece in pieces:
                await self._pace(len(piece), drip)
                # Counted before the send: the client may have it all before we run again.
                record(len(piece))
                if raw:
                    await stream.send_all(piece)
                else:
                    await send(conn, stream, h11.Data(data=piece))

        if how == "done":
            await send(conn, stream, h11.EndOfMessage())
            return status, True
        if how == "reset":
            # SO_LINGER 0: close() sends RST, the harshest way a connection dies.
            sock = socket_of(stream)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif how == "stall":
            # Keep the connection open, sending nothing, until the client gives up.
            while await stream.receive_some(65536):
                pass
        return status, False

    async def _pace(self, n: int, drip: TokenBucket | None) -> None:
        for bucket in (drip, self._bucket):
            if bucket is not None:
                wait = bucket.take(n, trio.current_time())
                if wait > 0:
                    await trio.sleep(wait)

    async def _control(
        self, conn: h11.Connection, stream: trio.abc.Stream, method: str, path: str, body: bytes
    ) -> bool:
        status, answer = 200, b""
        try:
            if path == "/_stats" and method == "GET":
                answer = json.dumps(self.stats.to_json()).encode()
            elif path == "/_reset" and method == "POST":
                self.stats.reset()
            elif path == "/_fault" and method == "POST":
                data = json.loads(body)
                spec = data.get("fault")
                self.misbehave(data["path"], None if spec is None else Fault.from_json(spec))
            else:
                status = 405
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = 400, f"{exc}\n".encode()
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(answer)))]
        await send(conn, stream, h11.Response(status_code=status, headers=headers))
        if method != "HEAD":
            await send(conn, stream, h11.Data(data=answer))
        await send(conn, stream, h11.EndOfMessage())
        return True


# --- as a process ------------------------------------------------------------------------------


async def _main(
    server: OriginServer, address: str, port: int, tls: tuple[Path, Path] | None = None
) -> None:
    context = server_ssl_context(*tls) if tls is not None else None
    async with trio.open_nursery() as nursery:
        bound = await nursery.start(
            functools.partial(server.serve, address, port, ssl_context=context)
        )
        sys.stdout.write(json.dumps({"port": bound}) + "\n")
        sys.stdout.flush()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A misbehaving test origin (HTTP/1.1).")
    parser.add_argument("--address", default="127.0.0.2")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", type=Path, required=True, help="serve files under DIR")
    parser.add_argument("--rate", type=int, default=0, help="shared limit in bytes/s; 0: none")
    parser.add_argument(
        "--generate", action="append", default=[], metavar="/PATH=SIZE[:SEED[:EVERY[:RUN]]]",
        help="serve SIZE bytes made on the fly at PATH; with EVERY, zeros but for RUN (4MiB) "
        "drawn bytes at the start of each EVERY (frumitcache.testing.generated)",
    )  # fmt: skip
    parser.add_argument("--tls-cert", type=Path, help="serve HTTPS with this PEM certificate")
    parser.add_argument("--tls-key", type=Path, help="the private key of --tls-cert (PEM)")
    args = parser.parse_args(argv)
    if (args.tls_cert is None) != (args.tls_key is None):
        parser.error("--tls-cert and --tls-key go together")
    tls = (args.tls_cert, args.tls_key) if args.tls_cert is not None else None
    with contextlib.suppress(KeyboardInterrupt):
        server = OriginServer(args.dir, rate=args.rate)
        for spec in args.generate:
            server.add_generated(*parse_spec(spec))
        trio.run(_main, server, args.address, args.port, tls)


if __name__ == "__main__":
    main()
