"""The origin fetcher: one httpx client on trio, writing origin bodies into the store.

:meth:`OriginFetcher.fetch` is single-flight per URL: the first caller (the leader) runs the
fetch in its own task, later callers wait for its outcome and share it, result or error. If
the leader is cancelled, the fetch stops (its full chunks stay in the store as a resumable
partial) and a waiting caller takes over, resuming with ``Range``.

Bodies are written to the store as they arrive, so a caller can start the fetch with
``await nursery.start(fetcher.fetch, url)`` and read the object cut-through with
``store.open_reader(url)`` meanwhile. ``start`` returns a :class:`FetchInfo` once the origin
has answered with a body (or at once when the object is already stored); an origin error
before that raises from ``start`` itself.

Every URL fetched and every redirect hop passes the door's allow-list, and every connection the
union's address check (:mod:`frumitcache.origin._allow`): ``fetch(url, door=...)``.

Every body byte received counts against one :class:`~frumitcache.origin.TokenBucket` shared by
all fetches (``origin.max_rate``) and is counted per origin host (:meth:`statistics`); so are the
head of a ``HEAD`` answer (:meth:`head_size`, for ``estimate``: the head is all that crosses) and
the bytes of a tunnel, both ways (:meth:`open_tunnel`, for apt's ``CONNECT``).
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

import httpx
import trio

from frumitcache._log import get_logger
from frumitcache._rate import RateMeter, TokenBucket
from frumitcache._version import __version__
from frumitcache.config import OriginConfig
from frumitcache.errors import (
    DigestMismatchError,
    NotAllowedError,
    OriginError,
    OriginUnreachableError,
    origin_status,
)
from frumitcache.origin._allow import (
    ALLOW_EXTENSION,
    AllowList,
    AllowPolicy,
    Door,
)
from frumitcache.origin._body import ResponseBody
from frumitcache.origin._hold import FetchHold
from frumitcache.origin._tunnel import UplinkStream, connect_checked, host_port
from frumitcache.origin._uplink import uplink_transport
from frumitcache.origin._via import via_of

if TYPE_CHECKING:
    from frumitcache.origin._backoff import UpstreamBackoff
    from frumitcache.store import Manifest, Store

from frumitcache.origin._job import (
    META_CONTENT_TYPE,
    META_ETAG,
    META_LAST_MODIFIED,
    _host_of,
    _Job,
)
from frumitcache.origin._parts import Authorizer, FetchInfo, _Store, _Upstream
from frumitcache.origin._stats import OriginStats

log = get_logger("origin")


@dataclass(slots=True)
class _Flight:
    """One URL being fetched; waiters share its outcome."""

    info: FetchInfo | None = None
    info_ready: trio.Event = field(default_factory=trio.Event)
    done: trio.Event = field(default_factory=trio.Event)
    result: Manifest | None = None
    error: BaseException | None = None  # None with result None: the leader was cancelled


class OriginFetcher:
    """The uplink client of one agent. Use as ``async with OriginFetcher(cfg, store) as f``
    (or call :meth:`aclose`). ``transport`` replaces the network (tests, proxies). ``allow``
    is every door's allow-list (the agent builds it from the whole config); by default
    ``origin.allow`` for every door. ``wrap`` wraps the uplink transport (the federation's
    links: parents and siblings asked before the origin, under the same pacing and counters;
    their bytes are counted per link, apart from the origins')."""

    def __init__(
        self,
        config: OriginConfig,
        store: Store,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        allow: AllowPolicy | None = None,
        wrap: Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        self.config = config
        self.allow = allow or AllowPolicy.from_lists(config.allow)
        self._store: _Store = store
        if transport is None:
            transport = uplink_transport(config.proxy, self.allow.door("site"))
        if wrap is not None:
            transport = wrap(transport)
        self._client = httpx.AsyncClient(
            transport=transport,
            timeout=httpx.Timeout(config.read_timeout_s, connect=config.connect_timeout_s),
            follow_redirects=True,
            max_redirects=config.max_redirects,
            # Only our config decides about proxies, never the environment.
            trust_env=False,
            event_hooks={"request": [self._check_hop], "response": [self._count_response]},
            headers={
                "User-Agent": config.user_agent or f"frumitcache/{__version__}",
                # Store the representation the origin holds, byte for byte.
                "Accept-Encoding": "identity",
            },
        )
        self._bucket = TokenBucket(config.max_rate)
        self._meter = RateMeter()
        self._flights: dict[str, _Flight] = {}
        self._bytes: Counter[str] = Counter()
        self._federation: Counter[str] = Counter()
        self._rejected: Counter[str] = Counter()  # per link: objects whose bytes failed checks
        self._requests: Counter[str] = Counter()
        self._sent = 0
        self._tunnels = 0
        self._resumes = 0
        self._fetches = 0
        self._backed_off = 0

    def _allow_of(self, request: httpx.Request) -> AllowList:
        allow = request.extensions.get(ALLOW_EXTENSION)
        return allow if isinstance(allow, AllowList) else self.allow.door("site")

    async def _check_hop(self, request: httpx.Request) -> None:
        # httpx calls this before the first request and before every redirect it follows,
        # and carries the request's extensions (the door's list) over to the redirect.
        self._allow_of(request).check(str(request.url))

    async def _count_response(self, response: httpx.Response) -> None:
        # A hook sees every response, redirects included, even when a redirect limit ends
        # the request before the caller gets a response.
        self._requests[via_of(response) or _host_of(response.url)] += 1
        location = response.headers.get("location")
        if response.is_redirect and location:
            try:
                target = str(response.url.join(location))
            except (httpx.InvalidURL, ValueError):
                return  # httpx refuses it itself
            try:
                self._allow_of(response.request).check(target)
            except NotAllowedError as exc:
                raise NotAllowedError(f"{response.url} redirects to {exc}") from None

    async def head_size(self, url: str, *, door: Door) -> tuple[int, int | None]:
        """``(status, Content-Length)`` of a HEAD to ``url`` (no body crosses the uplink; the
        answer's head is paced and counted as the bytes it brought)."""
        allow = self.allow.door(door)
        allow.check(url)
        try:
            resp = await self._client.head(url, extensions={ALLOW_EXTENSION: allow})
        except httpx.HTTPError as exc:
            raise OriginError(f"origin HEAD failed: {exc or type(exc).__name__}") from exc
        # The head as it came on the wire, near enough: status line, fields, blank line.
        size = 17 + len(resp.reason_phrase) + sum(len(k) + len(v) + 4 for k, v in resp.headers.raw)
        await self._pace(size)
        self._bytes[_host_of(resp.url)] += size
        length = resp.headers.get("content-length")
        return resp.status_code, int(length) if length and length.isdigit() else None

    async def open_tunnel(self, host: str, port: int, *, allow: AllowList) -> UplinkStream:
        """A stream to ``host:port`` through the uplink for a door's tunnel (apt's CONNECT),
        checked by ``allow`` (name and address), paced by ``origin.max_rate`` both ways and
        counted per host. :class:`NotAllowedError` or :class:`OriginUnreachableError`."""
        inner = await connect_checked(host, port, allow, self.config.connect_timeout_s)
        shown = host_port(host, port)
        self._tunnels += 1
        self._requests[shown] += 1

        async def account(n: int, way: str) -> None:
            await self._pace(n)
            if way == "in":
                self._bytes[shown] += n
            else:
                self._sent += n

        return UplinkStream(inner, account)

    def tunnel_opener(self, allow: AllowList) -> Callable[[str, int], Awaitable[UplinkStream]]:
        """:meth:`open_tunnel` with ``allow``, as a door's tunnel hook calls it."""
        return functools.partial(self.open_tunnel, allow=allow)

    async def get_small(
        self, url: str, *, door: Door, headers: Mapping[str, str], max_bytes: int = 65536
    ) -> tuple[int, bytes]:
        """``(status, body)`` of a GET whose answer is small and never stored (a registry's
        token): allow-listed for ``door`` (redirects too), counted per host, paced by the
        uplink budget. A body over ``max_bytes`` is an error."""
        allow = self.allow.door(door)
        allow.check(url)
        try:
            async with self._client.stream(
                "GET", url, headers=dict(headers), extensions={ALLOW_EXTENSION: allow}
            ) as resp:
                host = _host_of(resp.url)  # requests are counted by the response hook
                reading = ResponseBody(resp)
                body = bytearray()
                try:
                    async for piece in reading.chunks():
                        await self._pace(len(piece))
                        self._bytes[host] += len(piece)
                        body += piece
                        if len(body) > max_bytes:
                            raise OriginError(f"{url}: answer larger than {max_bytes} bytes")
                    reading.done = True
                finally:
                    with trio.CancelScope(deadline=trio.current_time() + 5, shield=True):
                        await reading.abandon()
                return resp.status_code, bytes(body)
        except httpx.HTTPError as exc:
            raise OriginUnreachableError(f"GET {url} failed: {exc or type(exc).__name__}") from exc

    def token_getter(
        self, door: Door
    ) -> Callable[[str, Mapping[str, str]], Awaitable[tuple[int, bytes]]]:
        """:meth:`get_small` for ``door``, as a door's auth hook calls it: ``get(url, headers)``."""

        async def get(url: str, headers: Mapping[str, str]) -> tuple[int, bytes]:
            return await self.get_small(url, door=door, headers=headers)

        return get

    async def __aenter__(self) -> OriginFetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aclose()

    def statistics(self) -> OriginStats:
        origin = sum(self._bytes.values())
        federation = sum(self._federation.values())
        return OriginStats(
            bytes_received=origin + federation,
            bytes_by_host=dict(self._bytes),
            bytes_sent=self._sent,
            tunnels=self._tunnels,
            requests=sum(self._requests.values()),
            requests_by_host=dict(self._requests),
            backed_off=self._backed_off,
            resumes=self._resumes,
            fetches=self._fetches,
            active_fetches=len(self._flights),
            rate=self._meter.rate(trio.current_time()),
            max_rate=self.config.max_rate,
            origin_bytes=origin,
            federation_bytes=federation,
            federation_by_link=dict(self._federation),
            federation_rejected=dict(self._rejected),
        )

    # --- single flight -----------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        *,
        expected_digest: bytes | None = None,
        expected_size: int | None = None,
        revalidate: bool = False,
        door: Door = "site",
        headers: Sequence[tuple[str, str]] = (),
        auth: Authorizer | None = None,
        digest_header: str = "",
        keep_on_status: Collection[int] = (),
        backoff: UpstreamBackoff | None = None,
        hold: FetchHold | None = None,
        restarted: Callable[[FetchInfo | None], None] | None = None,
        task_status: trio.TaskStatus[FetchInfo] = trio.TASK_STATUS_IGNORED,
    ) -> Manifest:
        """Make the object at ``url`` complete in the store and return its manifest.

        ``door`` names whose allow-list the URL and its redirects must pass (``site``: the
        union, for requests from other members); :class:`NotAllowedError` otherwise.

        ``expected_digest``/``expected_size`` are checked before anything is stored.
        ``revalidate`` (index files) asks the origin with the stored validators first and
        keeps the stored object on 304. Raises :class:`~frumitcache.errors.OriginError`
        subclasses or :class:`~frumitcache.errors.DigestMismatchError`; nothing that failed
        is ever stored as a complete object.

        ``headers`` go to the origin as given (``Accept``); ``auth`` signs the requests and is
        asked again when the origin answers 401 (see :class:`Authorizer`). Both belong to the
        leader of the flight: a caller joining a running fetch of the URL shares its result.

        Revalidating with ``digest_header`` (a registry's ``Docker-Content-Digest``) asks with
        ``HEAD`` first and keeps the stored object when the header names its SHA-256: the
        body is fetched only when it changed. An origin status in ``keep_on_status`` while
        revalidating (a registry's 429) keeps the stored object too, logged as a warning.

        With ``backoff`` (the door's), a URL whose host could not be reached a moment ago is
        not asked: :class:`~frumitcache.errors.OriginUnreachableError` at once, until the
        backoff lets one attempt through (see :class:`UpstreamBackoff`). A host that answered
        429 or 503 is left alone the same way, for as long as its ``Retry-After`` asks (at
        most the backoff's maximum), and the refusal repeats its status.

        While ``hold`` (the leader's) is held, the fetch neither reads from the origin nor
        writes to the store (see :class:`FetchHold`); it goes on where it was when released.

        Bytes from a federation link (the ``wrap`` transport's) that fail the object's check
        (``expected_digest``, ``expected_size``) do not fail the fetch: that link is left for
        the rest of it (logged as ``fetch.link-rejected``, counted per link in
        :meth:`statistics`), everything stored is dropped, and the object is fetched again
        from the next link or the origin. ``restarted`` (the leader's) is told then: ``None``
        at once, before the new writer exists, and the next answer's :class:`FetchInfo`.
        """
        allow = self.allow.door(door)
        allow.check(url)
        started = False

        def announce(info: FetchInfo) -> None:
            nonlocal started
            if not started:
                started = True
                task_status.started(info)

        while True:
            flight = self._flights.get(url)
            if flight is None:
                upstream = _Upstream(
                    tuple(headers),
                    auth,
                    digest_header,
                    frozenset(keep_on_status),
                    revalidate,
                    hold,
                    restarted,
                )
                return await self._lead(
                    url, expected_digest, expected_size, revalidate, announce, allow, upstream,
                    backoff,
                )  # fmt: skip
            await flight.info_ready.wait()
            if flight.info is not None:
                announce(flight.info)
            await flight.done.wait()
            if flight.error is not None:
                raise flight.error
            if flight.result is not None:
                if expected_digest is not None and flight.result.digest != expected_digest:
                    raise DigestMismatchError(
                        f"{url}: origin content has SHA-256 {flight.result.digest.hex()}, "
                        f"expected {expected_digest.hex()}"
                    )
                return flight.result
            # The leader was cancelled: loop and take over (resuming its partial).

    async def _lead(
        self,
        url: str,
        expected_digest: bytes | None,
        expected_size: int | None,
        revalidate: bool,
        announce: Callable[[FetchInfo], None],
        allow: AllowList,
        upstream: _Upstream,
        backoff: UpstreamBackoff | None,
    ) -> Manifest:
        flight = _Flight()
        self._flights[url] = flight

        def share(info: FetchInfo) -> None:
            flight.info = info
            flight.info_ready.set()
            announce(info)

        try:
            flight.result = await self._fetch(
                url, expected_digest, expected_size, revalidate, share, allow, upstream, backoff
            )
            return flight.result
        except trio.Cancelled:
            raise
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            del self._flights[url]
            flight.info_ready.set()
            flight.done.set()

    # --- one fetch ---------------------------------------------------------------------------

    def cached_info(self, url: str, manifest: Manifest) -> FetchInfo:
        """What a fetch of ``url`` answers when ``manifest`` is served as held (with the
        origin's metadata stored beside it)."""
        meta = self._store.key_meta(url)
        return FetchInfo(
            url=url,
            size=manifest.size,
            offset=manifest.size,
            content_type=meta.get(META_CONTENT_TYPE),
            etag=meta.get(META_ETAG),
            last_modified=meta.get(META_LAST_MODIFIED),
            cached=True,
        )

    async def _fetch(
        self,
        url: str,
        expected_digest: bytes | None,
        expected_size: int | None,
        revalidate: bool,
        share: Callable[[FetchInfo], None],
        allow: AllowList,
        upstream: _Upstream,
        backoff: UpstreamBackoff | None,
    ) -> Manifest:
        if expected_digest is not None:
            # Content-addressed: the bytes may already be here under another URL.
            held = self._store.lookup(expected_digest)
            if held is not None:
                if self._store.lookup(url) != held:
                    self._store.map_key(url, held.digest)
                share(self.cached_info(url, held))
                return held
        stored = self._store.lookup(url)
        if stored is not None and expected_digest is not None and stored.digest != expected_digest:
            # Other content than wanted is stored under the URL: ask the origin whether it
            # changed since (conditional GET). A 304 means it still serves what is stored, so
            # the wanted digest cannot be had there, and no body crossed the uplink to learn it.
            revalidate = True
        if stored is not None and not revalidate:
            share(self.cached_info(url, stored))
            return stored
        job = _Job(self, url, expected_digest, expected_size, stored, share, allow, upstream)
        if backoff is None:
            self._fetches += 1
            return await job.run()
        host = _host_of(httpx.URL(url))
        if not backoff.admit(host, trio.current_time()):
            self._backed_off += 1
            raise backoff.refusal(host, trio.current_time(), url)
        self._fetches += 1
        try:
            manifest = await job.run()
        except (OriginError, DigestMismatchError) as exc:
            unreachable = isinstance(exc, OriginUnreachableError)
            self._settle(backoff, host, *origin_status(exc), unreachable=unreachable)
            raise
        finally:
            backoff.released(host)
        self._settle(backoff, host, *job.kept)  # a held copy kept under a 429 backs off too
        return manifest

    def _settle(self, b: UpstreamBackoff, host: str, status: int, later: str, **how: bool) -> None:
        # Retry-After may be an HTTP-date: the wall clock reads it, not trio's.
        now, wall = trio.current_time(), time.time()
        delay = b.settle(host, now, wall, status=status, retry_after=later, **how)
        if delay is not None:
            why = status or "unreachable"
            log.warning(
                "fetch.backoff", host=host, status=why, failures=b.failures(host), wait_s=delay
            )

    async def _pace(self, n: int) -> None:
        now = trio.current_time()
        self._meter.add(n, now)
        wait = self._bucket.take(n, now)
        if wait > 0:
            await trio.sleep(wait)
