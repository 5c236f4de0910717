"""Member-to-member requests on the peer HTTP port: "stage this URL" (prefetch), "what do
you call this object" (locate by digest) and "the message you keep for me" (bulk).

A prefetch on another member must make *that* member's agent fetch through the site. The site
control plane's UDP requests only go to the seeder, so the request rides the peer HTTP port
every member already runs, signed with the site key like chunk requests (time, nonce and MAC
over method and path; replays are refused). The URL and digest travel in the path, so the
signature covers them:

    POST /prefetch/<base64url(msgpack [url, sha256 or nil])>   ->  200 "present" | "fetching"
    POST /keys/<sha256 hex>   ->  200 the keys (URLs) naming that complete object, one a line
    GET /bulk/<token>   ->  200 the body of a site message too large for a frame (404: gone)
    GET /tail/<base64url(key)>   ->  200 a fenced seeder's unfinished chunk (:mod:`._tail`)

The second exists because the seeder's catalogue is indexed by URL: a member asked to locate
a digest it does not hold itself learns a URL for it from the members that do. The third
carries the description of an object too big for a control frame
(:mod:`frumitcache.site._bulk`): its frame names the body's SHA-256, which the site checks
after the fetch.

:class:`PrefetchPeerHttpServer` answers all three (and everything else as the plain chunk
server does); :func:`request_prefetch`, :func:`request_keys`, :func:`request_bulk` and
:func:`request_tail` ask a member.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable

import h11
import msgpack
import trio

from frumitcache._digest import parse_digest
from frumitcache.agent._tail import TAIL, Tail, key_of, tail_path, unpack_tail
from frumitcache.errors import FrumitcacheError, PeerError, ProtocolError
from frumitcache.store import Store
from frumitcache.swarm import (
    AUTH_HEADER,
    IdleTimer,
    MerkleTree,
    PeerHttpServer,
    PeerLimits,
    sign_request,
)

PREFIX = b"/prefetch/"
KEYS = b"/keys/"
BULK = b"/bulk/"
_MAX_BODY = 4096
#: A tail asked of a member still writing the object: asked again this often, this many times.
TAIL_RETRY_S = 0.25
TAIL_TRIES = 5

#: Called with (url, sha256) on the member asked; returns "present" or "fetching".
PrefetchHandler = Callable[[str, bytes | None], str]
#: Called with an object digest; returns the keys naming it here (empty: not held).
KeysHandler = Callable[[bytes], list[str]]
#: Called with a bulk token; returns the body kept under it (``None``: none).
BulkHandler = Callable[[int], bytes | None]
#: Called with a key; returns the packed tail kept for it (``None``: none; "writing": not
#: yet, a writer of the key is open).
TailHandler = Callable[[str], bytes | str | None]


def encode_target(url: str, sha256: bytes | None) -> bytes:
    packed: bytes = msgpack.packb([url, sha256], use_bin_type=True)
    return PREFIX + base64.urlsafe_b64encode(packed).rstrip(b"=")


def decode_target(path: bytes) -> tuple[str, bytes | None]:
    """``(url, sha256)`` from a prefetch path; ValueError when it is not one."""
    token = path[len(PREFIX) :]
    try:
        obj = msgpack.unpackb(base64.urlsafe_b64decode(token + b"=" * (-len(token) % 4)))
    except Exception as exc:  # any decoding failure is a malformed request
        raise ValueError(f"malformed prefetch request: {exc}") from None
    if (
        not isinstance(obj, list)
        or len(obj) != 2
        or not isinstance(obj[0], str)
        or not (obj[1] is None or (isinstance(obj[1], bytes) and len(obj[1]) == 32))
    ):
        raise ValueError("malformed prefetch request")
    return obj[0], obj[1]


class PrefetchPeerHttpServer(PeerHttpServer):
    """The peer chunk server plus signed ``POST /prefetch/...`` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        key: bytes,
        *,
        prefetch: PrefetchHandler,
        keys: KeysHandler,
        bulk: BulkHandler | None = None,
        tail: TailHandler | None = None,
        upload_rate: int = 0,
        trees: Callable[[bytes], Awaitable[MerkleTree]] | None = None,
        limits: PeerLimits | None = None,
        max_clock_skew_s: float = 60.0,
        on_member: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(
            store,
            key,
            upload_rate=upload_rate,
            trees=trees,
            limits=limits,
            max_clock_skew_s=max_clock_skew_s,
            on_member=on_member,
        )
        self._prefetch = prefetch
        self._keys = keys
        self._bulk = bulk
        self._tail = tail

    async def _respond(
        self, conn: h11.Connection, stream: trio.SocketStream, req: h11.Request, idle: IdleTimer
    ) -> None:
        # The signature (method and path under the site key) was checked before routing.
        if req.target.startswith(BULK) and req.method == b"GET":
            token = req.target[len(BULK) :]
            body = None
            if self._bulk is not None and token.isdigit() and len(token) <= 20:
                body = self._bulk(int(token))
            await _reply(conn, stream, 404 if body is None else 200, body or b"gone")
            return
        if req.target.startswith(TAIL) and req.method == b"GET":
            try:
                key = key_of(req.target)
            except ValueError as exc:
                await _reply(conn, stream, 400, str(exc).encode())
                return
            tail = self._tail(key) if self._tail is not None else None
            if isinstance(tail, str):
                await _reply(conn, stream, 409, tail.encode())
            else:
                await _reply(conn, stream, 404 if tail is None else 200, tail or b"no tail")
            return
        if not req.target.startswith((PREFIX, KEYS)):
            await super()._respond(conn, stream, req, idle)
            return
        if req.method != b"POST":
            await _reply(conn, stream, 405, b"POST only")
            return
        if req.target.startswith(KEYS):
            try:  # the path names the object in hex: 64 lower-case digits, nothing else
                digest = parse_digest(req.target[len(KEYS) :].decode("latin-1"), "object")
            except ProtocolError:
                await _reply(conn, stream, 400, b"not a SHA-256")
                return
            names = self._keys(digest)
            await _reply(conn, stream, 200 if names else 404, "\n".join(names).encode())
            return
        try:
            url, sha256 = decode_target(req.target)
        except ValueError as exc:
            await _reply(conn, stream, 400, str(exc).encode())
            return
        try:
            state = self._prefetch(url, sha256)
        except FrumitcacheError as exc:
            await _reply(conn, stream, 409, f"{exc.code}: {exc}".encode())
            return
        await _reply(conn, stream, 200, state.encode())


async def _reply(conn: h11.Connection, stream: trio.SocketStream, status: int, body: bytes) -> None:
    head = h11.Response(status_code=status, headers=[(b"content-length", str(len(body)).encode())])
    await stream.send_all(
        (conn.send(head) or b"")
        + (conn.send(h11.Data(data=body)) or b"")
        + (conn.send(h11.EndOfMessage()) or b"")
    )


async def request_prefetch(
    address: tuple[str, int], key: bytes, url: str, sha256: bytes | None, *, timeout_s: float = 5.0
) -> str:
    """Ask the member at ``address`` (its peer HTTP port) to stage ``url``; its answer."""
    status, text = await _signed_post(address, key, encode_target(url, sha256), timeout_s)
    if status != 200:
        raise PeerError(f"{address[0]}: prefetch refused (HTTP {status}): {text}")
    return text


async def request_keys(
    address: tuple[str, int], key: bytes, digest: bytes, *, timeout_s: float = 2.0
) -> list[str]:
    """The keys under which the member at ``address`` holds object ``digest`` (may be [])."""
    status, text = await _signed_post(address, key, KEYS + digest.hex().encode(), timeout_s)
    if status == 404:
        return []
    if status != 200:
        raise PeerError(f"{address[0]}: keys request refused (HTTP {status}): {text}")
    return [line for line in text.splitlines() if line]


async def request_bulk(
    address: tuple[str, int], key: bytes, token: int, size: int, *, timeout_s: float = 10.0
) -> bytes:
    """The body of ``size`` bytes the member at ``address`` keeps for us under ``token``."""
    status, body = await _signed(
        address, key, BULK + str(token).encode(), timeout_s, method=b"GET", max_body=size
    )
    if status != 200:
        raise PeerError(f"{address[0]}: bulk body {token} not served (HTTP {status})")
    return body


async def request_tail(
    address: tuple[str, int], key: bytes, name: str, *, chunk_size: int, timeout_s: float = 10.0
) -> Tail | None:
    """The unfinished chunk of object ``name`` the member at ``address`` keeps (``None``:
    none); PeerError when the answer is not one the site key authenticates. While the member
    still writes the object (its fenced fetch unwinding: 409) it is asked again, every
    :data:`TAIL_RETRY_S` up to :data:`TAIL_TRIES` times."""
    for _ in range(TAIL_TRIES):
        status, body = await _signed(
            address, key, tail_path(name), timeout_s, method=b"GET", max_body=chunk_size + 256
        )
        if status != 409:
            break
        await trio.sleep(TAIL_RETRY_S)
    if status in (404, 409):
        return None
    if status != 200:
        raise PeerError(f"{address[0]}: tail not served (HTTP {status})")
    return unpack_tail(key, name, body, chunk_size=chunk_size)


async def _signed_post(
    address: tuple[str, int], key: bytes, path: bytes, timeout_s: float
) -> tuple[int, str]:
    status, body = await _signed(address, key, path, timeout_s)
    return status, body.decode(errors="replace")


async def _signed(
    address: tuple[str, int],
    key: bytes,
    path: bytes,
    timeout_s: float,
    *,
    method: bytes = b"POST",
    max_body: int = _MAX_BODY,
) -> tuple[int, bytes]:
    try:
        with trio.fail_after(timeout_s):
            stream = await trio.open_tcp_stream(*address)
            async with stream:
                conn = h11.Connection(h11.CLIENT)
                req = h11.Request(
                    method=method,
                    target=path,
                    headers=[
                        (b"host", address[0].encode()),
                        (AUTH_HEADER, sign_request(key, method, path, time.time())),
                        (b"content-length", b"0"),
                        (b"connection", b"close"),
                    ],
                )
                await stream.send_all(
                    (conn.send(req) or b"") + (conn.send(h11.EndOfMessage()) or b"")
                )
                status = 0
                body = bytearray()
                while True:
                    event = conn.next_event()
                    if event is h11.NEED_DATA:
                        data = await stream.receive_some(65536)
                        conn.receive_data(data)
                        continue
                    if isinstance(event, h11.ConnectionClosed):
                        raise PeerError(f"{address[0]}: connection closed mid-reply")
                    if isinstance(event, h11.Response):
                        status = event.status_code
                    elif isinstance(event, h11.Data):
                        body += event.data
                        if len(body) > max(max_body, _MAX_BODY):
                            raise PeerError(f"{address[0]}: reply too long")
                    elif isinstance(event, h11.EndOfMessage):
                        break
    except (OSError, trio.BrokenResourceError, trio.TooSlowError, h11.ProtocolError) as exc:
        raise PeerError(
            f"{address[0]}: request to the peer port failed: {exc or type(exc).__name__}"
        ) from None
    return status, bytes(body)
