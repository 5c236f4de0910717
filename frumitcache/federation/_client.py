"""A child site's federation links: the uplink transport that asks siblings, then parents,
then the origin.

:class:`FederationTransport` wraps the origin fetcher's httpx transport (``OriginFetcher(...,
wrap=...)``), so a federated fetch is the same fetch as before: the same single flight, Range
resume after the bytes already stored, retries, ``origin.max_rate`` pacing and byte counters.
Only where the bytes come from changes. For each GET without credentials it tries, in order:

1. siblings, with ``only-if-cached`` (they answer from what they hold or say 504; 503 with
   ``x-frumit-busy`` when already serving ``max_sibling_streams`` sibling sites: the next
   sibling or a parent is asked, and that one again for the next object), skipped for objects
   that may change (their copy may be older than the origin's); with ``relay_depth`` also
   from what their seeder is fetching now (the answer names the sites it comes through, kept
   as ``upstream``: this site relays on only within the depth, never back up the chain);
2. parents, which fetch through their own site (single-flight for all their children) and
   stream the object back cut-through;
3. the origin, through the wrapped transport, exactly as without federation.

A member that cannot be reached, refuses, or dies mid-body is skipped for
``federation.retry_after_s``; when a body breaks, the fetcher resumes with Range and this
transport offers the resumed request to the next member, site or the origin. A member whose
body broke (its link crawling under ``min_rate`` while busy, see ``RateFloor``; silent past
``read_timeout_s``; cut) is not asked again for the rest of that fetch, however short
``retry_after_s``: otherwise two parents on one slow path take turns until the fetcher's
resumes run out, and the origin is never reached.
While a parent streams an object, the siblings are asked again every
``federation.sibling_recheck_s`` from the offset reached: the first that holds it and is free
answers, its answer is kept, and the parent's stream ends as a break the fetcher resumes with
Range, which is then handed that answer (a sibling busy when the fetch began, or a site that
finished since, takes over from a parent many children share).
A member whose bytes failed the fetcher's check of the object (its SHA-256 or size, named in
``SKIP_EXTENSION``) is not asked again in that fetch either, which starts over from the next
member or the origin (:mod:`frumitcache.origin._links`). Anything but GET goes to the origin
directly, and so does a request with credentials (a registry's token), unless the fetcher knows
the object's SHA-256 (a registry blob or manifest by digest): then members are asked only for
what they hold (``only-if-cached``, parents too: they could not fetch it without our
credentials; a parent also serves what it is fetching for itself at that moment), never sent
the credentials, and whatever they send is checked against the digest
before it is stored.

This module dials only the members listed in ``[federation]`` (the uplink seam's one other
dialler, checked by ``tests/tooling/test_uplink_seam.py``): the fetcher still paces and counts
every byte they send, per link (``parent@host:port``).
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import httpx
import trio

from frumitcache._log import get_logger
from frumitcache._rate import TokenBucket
from frumitcache.config import FederationConfig, split_member
from frumitcache.federation._wire import (
    BUSY_HEADER,
    CHAIN_HEADER,
    FORWARDED,
    FRESHNESS_HEADER,
    IN_FLIGHT_HEADER,
    JOIN,
    ONLY_IF_CACHED,
    ORIGIN_STATUS_HEADER,
    REFUSED_HEADER,
    RELAY,
    SITE_HEADER,
    RateFloor,
    Role,
    object_target,
    parse_chain,
    takes,
)
from frumitcache.origin import (
    DIGEST_EXTENSION,
    FRESHNESS_EXTENSION,
    SKIP_EXTENSION,
    VIA_EXTENSION,
    parse_content_range,
)
from frumitcache.swarm import AUTH_HEADER, sign_request

log = get_logger("federation")

#: Fetches in progress whose broken members a transport remembers (a bound, not a tuning knob:
#: a seeder fetches a handful of objects at once).
_BROKE_URLS = 256
#: With relays, the longest random pause before a second walk over the siblings (a fetch's
#: first request only): spreads a release's simultaneous asks over a second.
RELAY_PAUSE_S = 1.0
#: A sibling's answer kept for the fetcher's resume is dropped if not taken by then (the
#: fetch was cancelled): it holds one of that sibling's stream slots.
_HANDOFF_S = 30.0


class _MovedToSibling(httpx.ReadError):
    """Ends a parent's body on purpose: a sibling answered for the rest (not the link's fault)."""


@dataclass(slots=True)
class _Move:
    """What a parent's stream needs to offer the rest of its object to the siblings."""

    request: httpx.Request  # the fetcher's request this stream answers
    freshness: str
    held_only: bool
    start: int  # the offset of the body's first byte
    total: int | None  # the object's size, when the answer said it
    validator: str | None  # the answer's ETag or Last-Modified: If-Range for the sibling
    next_at: float  # trio time of the next walk over the siblings


@dataclass(slots=True)
class Link:
    """One parent or sibling member: its address, pacing and what it has done."""

    role: Role
    host: str
    port: int
    bucket: TokenBucket
    down_until: float = -1.0  # trio time before which the member is skipped
    answered: int = 0  # requests it answered with content
    passed: int = 0  # requests it declined (not held, busy, refused, failed)
    busy: int = 0  # of those, answered busy (serving max_sibling_streams siblings already)
    failures: int = 0  # unreachable, or broke mid-body
    bytes_received: int = 0
    name: str = field(init=False)

    def __post_init__(self) -> None:
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.name = f"{self.role}@{host}:{self.port}"

    @property
    def base(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


def links_of(config: FederationConfig) -> list[Link]:
    """Siblings first, then parents, each in the order configured."""
    out = []
    for role, members in (("sibling", config.siblings), ("parent", config.parents)):
        for member in members:
            host, port = split_member(member)
            out.append(Link(role, host, port, TokenBucket(config.max_rate)))  # type: ignore[arg-type]
    return out


class FederationTransport(httpx.AsyncBaseTransport):
    """See the module docstring. ``links`` dials the members (a test may pass its own)."""

    def __init__(
        self,
        origin: httpx.AsyncBaseTransport,
        *,
        config: FederationConfig,
        key: bytes,
        site: str = "",
        links: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._origin = origin
        self._config = config
        self._key = key
        self._site = site
        # Members are configured addresses on the VPN (private or ULA): no origin guard here.
        self._links = links or httpx.AsyncHTTPTransport()
        self._clock = clock
        self.links = links_of(config)
        self.to_origin = 0  # requests that went on to the origin
        # URL -> members whose body broke during its current fetch (a request without Range
        # starts a new fetch); the oldest URLs are dropped past _BROKE_URLS.
        self._broke: OrderedDict[str, set[str]] = OrderedDict()
        # URL -> (offset, when, a sibling's answer from there) for the fetcher's next resume.
        self._handoff: dict[str, tuple[int, float, httpx.Response]] = {}
        # URL -> the sites its current fetch comes through (relay_depth; () from a parent, the
        # origin or a holder; None: unknown), the oldest dropped past _BROKE_URLS.
        self._chains: OrderedDict[str, tuple[str, ...] | None] = OrderedDict()

    def upstream(self, url: str) -> tuple[str, ...] | None:
        """The sites this transport's running fetch of ``url`` comes through, nearest first
        (() from a parent, a holder or the origin); None before an answer, or unknown. The
        federation endpoint relays only a fetch whose chain it knows (``may_relay``)."""
        return self._chains.get(url)

    def _through(self, url: str, chain: tuple[str, ...] | None) -> None:
        self._chains[url] = chain
        self._chains.move_to_end(url)
        while len(self._chains) > _BROKE_URLS:
            self._chains.popitem(last=False)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # Only the fetcher's object fetches (they carry a freshness) may come from another
        # cache; a token request or a HEAD goes to the origin.
        freshness = request.extensions.get(FRESHNESS_EXTENSION)
        if request.method != "GET" or freshness is None:
            return await self._origin.handle_async_request(request)
        held_only = False
        if "authorization" in request.headers:
            # Credentials never cross sites, and a member cannot fetch with ours. Content
            # known by its digest (a registry blob) is the same bytes whoever holds it, and
            # the fetcher checks them against it: ask for it only-if-cached, without them.
            if freshness != "immutable" or not _knows_digest(request):
                return await self._origin.handle_async_request(request)
            held_only = True
        url = str(request.url)
        if "range" not in request.headers:
            self._broke.pop(url, None)  # a new fetch: every member gets its chance again
            self._chains.pop(url, None)
        # Links whose bytes failed the fetcher's check of this object: never again in its fetch.
        rejected = request.extensions.get(SKIP_EXTENSION) or frozenset()
        handed = await self._claim(url, request.headers.get("range"), rejected)
        if handed is not None:
            self._through(url, ())  # a holder's: complete, so no chain to loop back through
            return handed
        walks: tuple[str, ...] = ("sibling", "parent")
        if freshness != "revalidate" and "range" not in request.headers and self._relaying():
            # Sites of a release ask at once: whoever asks a sibling before that one asked its
            # parent finds nothing to relay. A second walk after a random pause finds the
            # sites that asked first (bench.sim models the same pause).
            walks = ("sibling", "pause", "sibling", "parent")
        for role in walks:
            if role == "pause":
                await trio.sleep(random.uniform(0, RELAY_PAUSE_S))
                continue
            for link in self.links:
                if link.role != role or (role == "sibling" and freshness == "revalidate"):
                    continue
                if not self._usable(link, url, rejected):
                    continue
                response = await self._ask(link, request, freshness, held_only=held_only)
                if response is not None:
                    return response
        self.to_origin += 1
        self._through(url, ())
        return await self._origin.handle_async_request(request)

    async def _ask(
        self,
        link: Link,
        request: httpx.Request,
        freshness: str,
        *,
        held_only: bool,
        relay: bool = True,
    ) -> httpx.Response | None:
        # Only the FORWARDED headers travel: never Authorization or a cookie.
        headers = {k: v for k, v in request.headers.items() if k.lower() in FORWARDED}
        headers[FRESHNESS_HEADER] = freshness
        if self._site:
            headers[SITE_HEADER] = self._site
        if link.role == "sibling" or held_only:
            headers["cache-control"] = ONLY_IF_CACHED
        if held_only and link.role == "parent":
            # A parent pulling the same blob for itself right now serves it as it arrives:
            # the origin sends it once although our token cannot travel.
            headers[IN_FLIGHT_HEADER] = JOIN
        elif link.role == "sibling" and relay and self._config.relay_depth and self._site:
            # A sibling fetching it right now may relay it (within the depth, see _wire).
            headers[IN_FLIGHT_HEADER] = RELAY
        timeout = dict(request.extensions.get("timeout") or {})
        timeout["connect"] = self._config.connect_timeout_s
        # A parent releases a chunk once it is verified: the gap between two reads can be a
        # chunk-time of its own uplink, far longer than an origin's.
        timeout["read"] = self._config.read_timeout_s
        ask = httpx.Request(
            "GET",
            link.base + object_target(str(request.url)),
            headers=headers,
            extensions={"timeout": timeout},
        )
        ask.headers[AUTH_HEADER.decode()] = sign_request(
            self._key, b"GET", ask.url.raw_path, self._clock()
        ).decode()
        if link.role == "parent":
            # Known before the answer: a sibling asking meanwhile may relay from here (a parent
            # holds its first bytes back until a whole chunk is verified: seconds).
            self._through(str(request.url), ())
        try:
            response = await self._links.handle_async_request(ask)
        except httpx.TransportError as exc:
            self._fail(link, f"unreachable: {exc or type(exc).__name__}")
            return None
        said = ORIGIN_STATUS_HEADER in response.headers
        if not takes(link.role, response.status_code, said):
            link.passed += 1
            if REFUSED_HEADER in response.headers:
                # The link itself is refused (our key is not theirs): skip it for a while.
                # Any other refusal (not held, not allowed, the origin's 401, the member's
                # site failing) concerns this object only.
                self._fail(link, "refused: federation key not accepted", count=False)
            elif BUSY_HEADER in response.headers:
                # Busy with other siblings: this object only, never marked down (the next
                # object may find it free); nothing is remembered of this answer.
                link.busy += 1
                log.info("federation.sibling-busy", url=str(request.url), link=link.name)
            await response.aclose()
            return None
        link.answered += 1
        chained = response.headers.get(CHAIN_HEADER)
        self._through(str(request.url), parse_chain(chained) if chained is not None else ())
        status = response.status_code
        log.info("federation.fetch", url=str(request.url), link=link.name, status=status)
        inner = response.stream
        assert isinstance(inner, httpx.AsyncByteStream)  # an async transport's body
        move = None
        start, total = _span(response)
        if (
            link.role == "parent"
            and status in (200, 206)
            and start >= 0
            and self._may_move(freshness)
        ):
            validator = response.headers.get("etag") or response.headers.get("last-modified")
            again = trio.current_time() + self._config.sibling_recheck_s
            move = _Move(request, freshness, held_only, start, total, validator, again)
        return httpx.Response(
            status_code=status,
            headers=response.headers,
            stream=_LinkStream(inner, link, self, str(request.url), move),
            extensions={**response.extensions, VIA_EXTENSION: link.name},
        )

    def _relaying(self) -> bool:
        """Do this site's siblings relay what they fetch (``federation.relay_depth``)?"""
        if self._config.relay_depth < 2 or not self._site:  # 1: no relay between
            return False
        return any(link.role == "sibling" for link in self.links)

    def _usable(self, link: Link, url: str, rejected: frozenset[str]) -> bool:
        """May ``link`` be asked for ``url`` now: not skipped after a failure, and neither
        broken mid-body nor rejected in this fetch?"""
        if trio.current_time() < link.down_until or link.name in rejected:
            return False
        return link.name not in self._broke.get(url, ())

    def _may_move(self, freshness: str) -> bool:
        """May a parent's stream of this object be taken over by a sibling?"""
        if freshness == "revalidate" or not self._config.sibling_recheck_s:
            return False
        return any(link.role == "sibling" for link in self.links)

    async def _move_to_sibling(self, url: str, move: _Move, offset: int) -> str | None:
        """Ask the siblings for ``url`` from ``offset`` on, as the fetcher's resume would; keep
        the first whole answer for that resume (``_claim``). The sibling's name, or None."""
        rejected = move.request.extensions.get(SKIP_EXTENSION) or frozenset()
        headers = {k: v for k, v in move.request.headers.items() if k.lower() != "if-range"}
        headers["range"] = f"bytes={offset}-"
        if move.validator:
            headers["if-range"] = move.validator  # another version answers 200: not taken
        probe = httpx.Request("GET", move.request.url, headers=headers)
        probe.extensions = move.request.extensions
        for link in self.links:
            if link.role != "sibling" or not self._usable(link, url, rejected):
                continue
            # Only a holder takes over (no relay): one at the same offset would gain nothing.
            response = await self._ask(
                link, probe, move.freshness, held_only=move.held_only, relay=False
            )
            if response is None:
                continue
            start, total = _span(response)
            other_size = None not in (total, move.total) and total != move.total
            if response.status_code != 206 or start != offset or other_size:
                # Not the rest of the same object: the parent goes on.
                log.warning(
                    "federation.sibling-mismatch", url=url, link=link.name,
                    status=response.status_code, offset=offset, start=start, total=total,
                )  # fmt: skip
                await response.aclose()
                continue
            await self._drop(url)
            self._handoff[url] = (offset, trio.current_time(), response)
            log.info("federation.moved-to-sibling", url=url, link=link.name, offset=offset)
            return link.name
        return None

    async def _claim(
        self, url: str, range_: str | None, rejected: frozenset[str]
    ) -> httpx.Response | None:
        """The sibling's answer kept for this resume, if it starts where the resume does;
        answers kept past ``_HANDOFF_S`` (their fetch gone) are closed."""
        now = trio.current_time()
        for stale in [u for u, (_, at, _r) in self._handoff.items() if now - at > _HANDOFF_S]:
            await self._drop(stale)
        handed = self._handoff.pop(url, None)
        if handed is None:
            return None
        offset, _, response = handed
        if range_ == f"bytes={offset}-" and response.extensions[VIA_EXTENSION] not in rejected:
            return response
        await response.aclose()
        return None

    async def _drop(self, url: str) -> None:
        handed = self._handoff.pop(url, None)
        if handed is not None:
            await handed[2].aclose()

    def _fail(self, link: Link, detail: str, *, count: bool = True) -> None:
        if count:
            link.failures += 1
        link.down_until = trio.current_time() + self._config.retry_after_s
        log.warning("federation.link-skipped", link=link.name, detail=detail)

    def _broke_on(self, url: str, link: Link, detail: str) -> None:
        """``link``'s body for ``url`` broke: skipped for a while, and for the rest of the
        fetch (the resumed requests of ``url``)."""
        self._fail(link, detail)
        self._broke.setdefault(url, set()).add(link.name)
        self._broke.move_to_end(url)
        while len(self._broke) > _BROKE_URLS:
            self._broke.popitem(last=False)

    async def aclose(self) -> None:
        for url in list(self._handoff):
            await self._drop(url)
        await self._links.aclose()
        await self._origin.aclose()


def _span(response: httpx.Response) -> tuple[int, int | None]:
    """The offset of a body's first byte and the object's size, as its head says."""
    if response.status_code == 206:
        parsed = parse_content_range(response.headers.get("content-range", ""))
        if parsed is None:
            return -1, None  # not a range we can resume from
        return parsed[0], parsed[2]
    length = response.headers.get("content-length", "")
    return 0, int(length) if length.isdigit() else None


def _knows_digest(request: httpx.Request) -> bool:
    """Does the fetcher know the object's SHA-256 (and so discard a body that is not it)?"""
    digest = request.extensions.get(DIGEST_EXTENSION)
    return isinstance(digest, bytes) and len(digest) == 32


class _LinkStream(httpx.AsyncByteStream):
    """A member's body: paced at ``federation.max_rate``, counted, and a break marks the
    member down, so the fetcher's Range resume goes to the next one."""

    def __init__(
        self,
        inner: httpx.AsyncByteStream,
        link: Link,
        transport: FederationTransport,
        url: str,
        move: _Move | None = None,
    ) -> None:
        self._inner = inner
        self._link = link
        self._transport = transport
        self._url = url
        self._move = move  # a parent's stream: the siblings may take over
        self._closed = False  # given up on by the reader: a break after that is not the link's

    async def __aiter__(self) -> AsyncIterator[bytes]:
        link = self._link
        cfg = self._transport._config
        floor = RateFloor(cfg.min_rate, cfg.slow_window_s)
        move = self._move
        got = 0
        try:
            asked = trio.current_time()
            async for part in self._inner:
                link.bytes_received += len(part)
                now = trio.current_time()
                waited = now - asked  # for the member: not our pacing, not our reader
                wait = link.bucket.take(len(part), now)
                if wait > 0:
                    await trio.sleep(wait)
                yield part
                if floor.add(len(part), trio.current_time(), waited):
                    # A crawling link: end this body; the fetcher resumes after what it has
                    # from the next member, site or the origin.
                    raise httpx.ReadTimeout(f"slower than federation.min_rate ({cfg.min_rate} B/s)")
                got += len(part)
                if move is not None and trio.current_time() >= move.next_at:
                    offset = move.start + got
                    taker = await self._transport._move_to_sibling(self._url, move, offset)
                    if taker is not None:
                        raise _MovedToSibling(f"{taker} has the rest from byte {offset}")
                    move.next_at = trio.current_time() + cfg.sibling_recheck_s
                asked = trio.current_time()
        except _MovedToSibling:
            raise
        except httpx.TransportError as exc:
            if not self._closed:
                detail = f"broke mid-body: {exc or type(exc).__name__}"
                self._transport._broke_on(self._url, link, detail)
            raise

    async def aclose(self) -> None:
        self._closed = True
        await self._inner.aclose()
