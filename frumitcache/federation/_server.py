"""The federation endpoint of an agent: its site's content for other sites holding the
federation key (h11 on trio).

A separate listener (``federation.port``, 3147), not a path on the peer port 3144: the peer port
is the site's LAN door, keyed by the site key and sized for members; the federation endpoint
faces other sites over the backbone, under another key, so it gets its own admission pool (a
child's idle sockets cannot take the pre-auth slots of the site's own members) and an operator
can open exactly this port on the VPN and keep 3144 on the LAN. The mechanism is the peer
port's, reused: a :class:`~frumitcache.swarm.RequestGate` of its own bounds unauthenticated
connections and checks the signature (time window, nonce memory), and
:func:`~frumitcache.swarm.serve_signed` is the request loop of both ports.

A request for an origin URL is opened through the content seam exactly as a local client's
would be: held here, pulled from the site, or fetched by the site's seeder, which single-flights
it for every child at once. Bytes go out as the seam releases them (cut-through), complete
chunks with ``sendfile``. A sibling request (``only-if-cached``) is answered only from what this
agent holds, never fetched (a parent asked to join: also from its own fetch running right now;
with ``federation.relay_depth``, a sibling asking to relay: from that fetch too, within the depth
and never back to a site the bytes come through), and only while fewer than
``federation.max_sibling_streams`` such answers run: the next gets ``503`` with
``x-frumit-busy`` and its site asks its next sibling or its parents.
An unsigned or wrongly signed request gets ``403`` and the connection is closed; the agent
serves on.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import h11
import trio

from frumitcache._log import Throttle, get_logger
from frumitcache._rate import TokenBucket
from frumitcache._sendfile import FileRange, paced_step, send_body
from frumitcache.content import (
    Content,
    ContentRequest,
    ContentSource,
    http_date,
    http_status,
    open_piece,
    parse_http_date,
    plan_response,
    send_piece,
)
from frumitcache.errors import FrumitcacheError, OriginStatusError
from frumitcache.federation._wire import (
    BUSY_HEADER,
    CHAIN_HEADER,
    FRESHNESS_HEADER,
    IN_FLIGHT_HEADER,
    JOIN,
    ONLY_IF_CACHED,
    ORIGIN_STATUS_HEADER,
    REFUSED_HEADER,
    RELAY,
    SITE_HEADER,
    SiblingSlots,
    may_relay,
    parse_target,
    sibling_ask,
    site_name,
)
from frumitcache.swarm import AUTH_HEADER, PeerLimits, RequestGate, serve_signed

log = get_logger("federation")

_AUTH = AUTH_HEADER.decode()


@dataclass(slots=True)
class FederationServerStats:
    """What the endpoint gave other sites (mutable; the server updates it)."""

    requests: int = 0
    refused: int = 0  # no or wrong federation key: 403
    not_held: int = 0  # a sibling's only-if-cached request for what is not here: 504
    joined: int = 0  # an only-if-cached request that joined this agent's running fetch
    relayed: int = 0  # a sibling's ask served from this agent's running fetch (relay_depth)
    busy: int = 0  # a sibling's ask while max_sibling_streams were being served: 503
    failed: int = 0  # the seam's error answered (origin status, unreachable, ...)
    bytes_served: int = 0
    #: By asking child: ``site@address`` (the site a child names in ``x-frumit-site``; not
    #: authenticated beyond the federation key, so a label, not an identity) or the address.
    bytes_by_child: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class _Ask:
    """One child's request as the handlers pass it on: the connection, the request and what
    was read from it."""

    conn: h11.Connection
    stream: trio.SocketStream
    req: h11.Request
    headers: dict[str, str]
    url: str
    peer: str

    async def text(
        self, status: int, text: str, extra: list[tuple[str, str]] | None = None
    ) -> None:
        await _text(self.conn, self.stream, status, text, extra=extra)


class _Done(Exception):
    """End this connection (after a body failed part-way: never end a response short)."""


class FederationServer:
    """Serves ``GET /federation/v1/object?url=...`` to agents of federated sites."""

    # A body cut off on purpose (_Done) ends the connection, as does a stream closed under it.
    quiet: tuple[type[Exception], ...] = (_Done, trio.ClosedResourceError)

    def __init__(
        self,
        source: ContentSource,
        key: bytes,
        *,
        held: Callable[[str], bool],
        fetching: Callable[[str], bool] = lambda url: False,
        limits: PeerLimits | None = None,
        max_clock_skew_s: float = 60.0,
        max_rate: int = 0,
        max_sibling_streams: int = 0,
        relay_depth: int = 0,
        site: str = "",
        upstream: Callable[[str], tuple[str, ...] | None] = lambda url: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._source = source
        self._siblings = SiblingSlots(max_sibling_streams)  # held objects streamed to siblings
        self._max_rate = max_rate  # bytes/s per child connection (federation.max_rate)
        self._held = held  # does this agent hold ``url`` complete (a sibling's question)?
        self._fetching = fetching  # is a fetch of ``url`` running on this agent right now?
        self._relay_depth = relay_depth  # federation.relay_depth (0: held objects only)
        self._site = site  # this agent's site.name: a relay names itself in the chain
        self._upstream = upstream  # the sites this agent's fetch of ``url`` comes through
        self._gate = RequestGate(key, limits=limits, max_clock_skew_s=max_clock_skew_s, clock=clock)
        self.admission = self._gate.admission
        self.stats = FederationServerStats()
        self._pace = Throttle()

    async def serve(
        self,
        address: str,
        port: int,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``address:port`` until cancelled; reports the bound address."""
        listeners = await trio.open_tcp_listeners(port, host=None if address == "*" else address)
        bound = listeners[0].socket.getsockname()
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self.admission.accept_loop, listener, self._handle, nursery)
            log.info("federation.serving", address=f"{bound[0]}:{bound[1]}")
            task_status.started((str(bound[0]), int(bound[1])))

    async def _handle(self, stream: trio.SocketStream) -> None:
        await serve_signed(stream, self._gate, self)

    # --- the signed request loop's calls (a SignedHandler) --------------------------------

    async def refuse(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        peer = _peer_of(stream)
        self.stats.refused += 1
        held = self._pace.admit(f"refused {peer}", trio.current_time())
        if held is not None:
            reason = "bad signature" if _headers_of(req).get(_AUTH) else "no federation key"
            log.warning("federation.refused", peer=peer, reason=reason, since_last=held)
        await _text(
            conn,
            stream,
            403,
            "federation key required\n",
            extra=[(REFUSED_HEADER, "refused")],
            close=True,
        )

    def admitted(self, stream: trio.SocketStream) -> None:
        pass

    def connection_error(self, exc: Exception) -> None:
        if self._pace.admit("crash", trio.current_time()) is not None:
            log.error("federation.connection_error", error=f"{type(exc).__name__}: {exc}")

    async def answer(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request
    ) -> None:
        self.stats.requests += 1
        headers = _headers_of(req)
        await self._respond(conn, stream, req, headers, _child_of(headers, stream))

    async def _respond(
        self,
        conn: h11.Connection,
        stream: trio.SocketStream,
        req: h11.Request,
        headers: dict[str, str],
        peer: str,
    ) -> None:
        url = parse_target(req.target.decode("latin-1"))
        if req.method not in (b"GET", b"HEAD") or url is None:
            await _text(conn, stream, 400, "not a federation request\n")
            return
        ask = _Ask(conn, stream, req, headers, url, peer)
        cache_control = headers.get("cache-control", "")
        in_flight = headers.get(IN_FLIGHT_HEADER, "")
        sibling = ONLY_IF_CACHED in cache_control
        if sibling and not self._held(url):
            if in_flight == RELAY:
                await self._relay(ask)
                return
            # A parent is asked to join (see _wire): its own running fetch, never a new one.
            # The seam's open below joins it in the same trio step, so it cannot end in between.
            if in_flight != JOIN or not self._fetching(url):
                self.stats.not_held += 1
                await ask.text(504, "not held here (only-if-cached)\n")
                return
            self.stats.joined += 1
        elif sibling_ask(cache_control, in_flight):
            # Held, for a sibling: served only while fewer than max_sibling_streams run, so
            # later sites of a late release spread over holders and parents, not pile on one.
            await self._on_slot(ask, [])
            return
        await self._serve(ask, sibling)

    async def _on_slot(
        self, ask: _Ask, extra: list[tuple[str, str]], *, relayed: bool = False
    ) -> None:
        """Serve a sibling on one of the ``max_sibling_streams`` slots, or answer 503 busy:
        the sibling asks its next sibling or its parents."""
        if not self._siblings.take():
            self.stats.busy += 1
            await ask.text(
                503,
                "busy serving sibling sites (federation.max_sibling_streams)\n",
                [(BUSY_HEADER, "siblings"), ("Retry-After", "1")],
            )
            return
        self.stats.relayed += relayed  # counted as it starts: status shows a relay running
        try:
            await self._serve(ask, True, extra)
        finally:
            self._siblings.give()

    async def _relay(self, ask: _Ask) -> None:
        """A sibling's ask for what this agent is fetching right now (``relay_depth``): served
        from that fetch as it arrives, within the depth and never back up the chain, on one of
        the sibling slots; anything else is not held here (504)."""
        upstream = self._upstream(ask.url) if self._fetching(ask.url) else None
        asker = ask.headers.get(SITE_HEADER, "")
        if not may_relay(asker, self._site, upstream, self._relay_depth):
            self.stats.not_held += 1
            await ask.text(504, "not held here (only-if-cached, no relay)\n")
            return
        chain = ",".join((self._site, *(upstream or ())))
        await self._on_slot(ask, [(CHAIN_HEADER, chain)], relayed=True)

    async def _serve(
        self, ask: _Ask, sibling: bool, extra: list[tuple[str, str]] | None = None
    ) -> None:
        revalidate = ask.headers.get(FRESHNESS_HEADER) == "revalidate" and not sibling
        accept = ask.headers.get("accept")
        try:
            content = await self._source.open(
                ContentRequest(
                    ask.url,
                    "site",
                    "revalidate" if revalidate else "immutable",
                    headers=(("Accept", accept),) if accept else (),
                )
            )
        except FrumitcacheError as exc:
            self.stats.failed += 1
            status = http_status(exc)
            said = isinstance(exc, OriginStatusError) and status in (404, 410)
            why = [(ORIGIN_STATUS_HEADER, str(status))] if said else []
            log.info(
                "federation.failed", url=ask.url, peer=ask.peer, status=status, detail=str(exc)
            )
            await ask.text(status, f"{exc}\n", why)
            return
        await self._answer(ask, content, extra or [])

    async def _answer(self, ask: _Ask, content: Content, extra: list[tuple[str, str]]) -> None:
        conn, stream, req, headers, peer = ask.conn, ask.stream, ask.req, ask.headers, ask.peer
        info = content.info
        last_modified = parse_http_date(info.meta.last_modified)
        plan = plan_response(
            size=info.size,
            last_modified=last_modified,
            etag=info.meta.etag,
            range_header=headers.get("range") if req.method == b"GET" else None,
            if_range=headers.get("if-range"),
            if_modified_since=headers.get("if-modified-since"),
            if_none_match=headers.get("if-none-match"),
        )
        out: list[tuple[str, str]] = [("Date", http_date(time.time()))]
        if info.meta.last_modified is not None:
            out.append(("Last-Modified", info.meta.last_modified))  # as the origin wrote it
        if info.meta.etag is not None:
            out.append(("ETag", info.meta.etag))
        if plan.status == 304:
            await _send(conn, stream, h11.Response(status_code=304, headers=out))
            await _send(conn, stream, h11.EndOfMessage())
            return
        out += list(plan.headers)
        if plan.status == 416:
            await _text(conn, stream, 416, "requested range not satisfiable\n", extra=out)
            return
        out += [
            ("Content-Type", info.meta.content_type or "application/octet-stream"),
            ("Content-Length", str(plan.end - plan.start)),
            ("Accept-Ranges", "bytes"),
            ("X-Frumit-Provenance", info.provenance),
            *extra,
        ]
        head = h11.Response(status_code=plan.status, headers=out)
        if req.method == b"HEAD" or plan.end == plan.start:
            await _send(conn, stream, head)
            await _send(conn, stream, h11.EndOfMessage())
            return
        sent_head = False
        bucket = TokenBucket(self._max_rate)
        try:
            # Cut-through: each piece goes out the moment the seam releases it (verified).
            async with content.read_files(plan.start, plan.end) as pieces:
                async for piece in pieces:
                    async with open_piece(piece) as body:
                        if not sent_head:
                            await _send(conn, stream, head)
                            sent_head = True
                        await _send_paced(conn, stream, body, bucket)
                    self.stats.bytes_served += len(piece)
                    self.stats.bytes_by_child[peer] += len(piece)
        except EOFError:
            raise _Done from None
        except FrumitcacheError as exc:
            if not sent_head:
                self.stats.failed += 1
                await _text(conn, stream, http_status(exc), f"{exc}\n")
                return
            log.warning("federation.failed-part-way", url=ask.url, peer=peer, detail=str(exc))
            raise _Done from None
        if not sent_head:
            await _send(conn, stream, head)
        try:
            await _send(conn, stream, h11.EndOfMessage())
        except h11.LocalProtocolError:
            raise _Done from None  # fewer bytes than announced: the child must see a cut


async def _send_paced(
    conn: h11.Connection, stream: trio.SocketStream, body: bytes | FileRange, bucket: TokenBucket
) -> None:
    """One piece, at the link's rate when it has one (sendfile paced as the peer port does)."""
    if not bucket.rate:
        await send_piece(conn, stream, body)
        return

    def pace(n: int) -> float:
        return bucket.take(n, trio.current_time())

    step = paced_step(bucket.rate)  # a child's floor sees a slow link busy, not idle
    if isinstance(body, FileRange):
        await send_body(conn, stream, body, pace=pace, step_bytes=step)
        return
    for at in range(0, len(body), step):
        part = body[at : at + step]
        wait = pace(len(part))
        if wait > 0:
            await trio.sleep(wait)
        await send_piece(conn, stream, part)


def _headers_of(req: h11.Request) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in req.headers}


def _child_of(headers: dict[str, str], stream: trio.SocketStream) -> str:
    """``site@address`` of the asking child (the address alone if it names no usable site)."""
    address = _peer_of(stream)
    site = headers.get(SITE_HEADER, "")
    return f"{site}@{address}" if site_name(site) else address


def _peer_of(stream: trio.SocketStream) -> str:
    try:
        return str(stream.socket.getpeername()[0])
    except OSError:
        return "?"


async def _send(conn: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _text(
    conn: h11.Connection,
    stream: trio.SocketStream,
    status: int,
    text: str,
    *,
    extra: list[tuple[str, str]] | None = None,
    close: bool = False,
) -> None:
    body = text.encode()
    headers = [
        *(extra or []),
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
    ]
    if close:
        headers.append(("Connection", "close"))
    await _send(conn, stream, h11.Response(status_code=status, headers=headers))
    await _send(conn, stream, h11.Data(data=body))
    await _send(conn, stream, h11.EndOfMessage())
