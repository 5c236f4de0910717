"""How the agent answers "give me the bytes of this URL": the engine behind the content seam.

1. **Local**: the object is complete in the store (by digest when the caller knows it —
   content addressing makes the URL secondary — else by URL): serve it.
2. **Seeder** (or a one-node site): fetch it from the origin, single-flight, and announce each
   chunk to the site the moment it is stored (:mod:`frumitcache.agent._seeder`).
3. **Member**: ask the seeder (it starts the one origin fetch), then pull each chunk from its
   holders as it is announced (:mod:`frumitcache.agent._member`). If the seeder changes, ask
   the new one; if this node becomes the seeder, carry on as the seeder from what it holds.
4. **Fallback**: the site cannot serve → fetch the origin directly if ``site.fallback`` allows
   it (at once, or after ``site.fallback_timeout_s`` with no seeder named; a named seeder
   gets longer while the site moves, up to a cap: :mod:`frumitcache.agent._fallback`), counted
   and logged.

Every URL passes the allow-list of the door that asked (:meth:`ContentService.ensure`), and the
seeder checks a member's ``FetchRequest`` against the union of its own lists: a member cannot
make the seeder fetch what no door of the seeder admits.

One :class:`~frumitcache.agent._flight.Flight` per URL (the one single-flight) runs in the
agent's nursery; a :class:`~frumitcache.content.FreshnessWindow` per door says when an object
that may change is asked about again (the seeder's, for the whole site), by the door's
:class:`~frumitcache.content.Revalidation` (apt's index window by default). Front doors
reach all of this through :attr:`ContentService.source`, the agent's
:class:`~frumitcache.content.ContentSource`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import cast

import trio

from frumitcache._log import get_logger
from frumitcache.agent._fallback import FallbackClock, Verdict
from frumitcache.agent._flight import Flight, wait_any
from frumitcache.agent._member import MemberRole, SeederChanged
from frumitcache.agent._reading import follow
from frumitcache.agent._seeder import SeederRole
from frumitcache.agent._sitelink import SiteLink
from frumitcache.agent._source import AgentSource
from frumitcache.config import SiteConfig
from frumitcache.content import FreshnessWindow, Revalidation, UpstreamAuth
from frumitcache.errors import (
    AgentError,
    FrumitcacheError,
    OriginUnreachableError,
    PeerError,
    origin_status,
)
from frumitcache.origin import Door, FetchHold, FetchInfo, OriginFetcher, UpstreamBackoff
from frumitcache.store import HeldChunk, Manifest, ObjectReader, Store

log = get_logger("content")


@dataclass(frozen=True, slots=True)
class Opened:
    """An object being delivered: where it comes from, its size if known, its chunks in order
    as bytes (``chunks``) or as descriptors of the verified chunk files (``files``, for a
    local client that copies them itself). Iterate one of the two."""

    source: str
    size: int | None
    chunks: AsyncIterator[bytes]
    files: AsyncIterator[HeldChunk]
    via: str | None = None  # source "federation": the parent or sibling link that answered


@dataclass(slots=True)
class ContentStatistics:
    served_local: int = 0
    fetched_origin: int = 0
    fetched_site: int = 0
    fallbacks: int = 0
    failovers: int = 0
    # Seeder: members' manifest requests answered without an upstream GET for them (held,
    # inside the window, or joined to the fetch already running); see ``manifest_urls``.
    manifests_spared_for_members: int = 0
    # Held copies served because the origin could not confirm them (unreachable, or an error
    # status the door's policy keeps the held copy under): stale-if-error, by this node.
    served_stale: int = 0


# The control protocol's words for where a pull's bytes come from.
_PULL_SOURCE = {"local": "store", "site": "site", "federation": "federation", "uplink": "origin"}


class ContentService:
    """Finds or fetches objects for the front doors, the control API and other members."""

    def __init__(
        self,
        store: Store,
        fetcher: OriginFetcher,
        nursery: trio.Nursery,
        site: SiteLink | None = None,
        site_config: SiteConfig | None = None,
        *,
        index_window_s: float = 30.0,
        revalidation: Mapping[str, Revalidation] | None = None,
        backoff: Mapping[str, UpstreamBackoff] | None = None,
        manifest_urls: Mapping[str, Callable[[str], bool]] | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self._store = store
        self._fetcher = fetcher
        self._nursery = nursery
        self._site = site
        self.site_config = site_config or SiteConfig()
        self.flights: dict[str, Flight] = {}
        #: When each object that may change was last checked with its origin (by this node:
        #: alone, or as the seeder for the whole site).
        self.window = FreshnessWindow(index_window_s)
        #: Doors with a policy of their own (the registry's tag window), by door name.
        self.revalidation = dict(revalidation or {})
        self._windows = {
            door: FreshnessWindow(policy.window_s) for door, policy in self.revalidation.items()
        }
        #: Doors that back off an unreachable upstream (the registry's), by door name.
        self.backoff = dict(backoff or {})
        #: Per door, which of its URLs are manifests (counted as spared GETs by the seeder).
        self.manifest_urls = dict(manifest_urls or {})
        self.clock = clock
        self.auth: dict[str, UpstreamAuth] = {}  # by door name
        self.stats = ContentStatistics()
        self.stale: Counter[str] = Counter()  # ``stats.served_stale`` by door
        self._seeder = SeederRole(self)
        self._member = MemberRole(self)
        #: The content seam the front doors use.
        self.source = AgentSource(self)
        if site is not None:
            site.on_fetch = self._seeder.on_fetch_request

    # Read-only views for the control API's library requests (locate, estimate, cache, ...).
    @property
    def store(self) -> Store:
        return self._store

    @property
    def site(self) -> SiteLink | None:
        return self._site

    @property
    def fetcher(self) -> OriginFetcher:
        return self._fetcher

    def window_for(self, door: str) -> FreshnessWindow:
        """The freshness window of ``door``'s objects (the default one unless it has its own)."""
        return self._windows.get(door, self.window)

    def is_manifest(self, door: str, url: str) -> bool:
        known = self.manifest_urls.get(door)
        return known is not None and known(url)

    def is_fetching(self, url: str) -> bool:
        """True while a flight for ``url`` runs on this node."""
        return url in self.flights

    def decides_freshness(self) -> bool:
        """True when this node's window is the one that counts (alone, or the seeder)."""
        return self._site is None or self._site.solo or self._site.is_seeder()

    def may_serve_held(self, door: str, exc: BaseException) -> bool:
        """May a held copy be served instead of failing with ``exc`` (stale-if-error)? When
        the origin is unreachable (offline mode, every door), or answered a status ``door``'s
        policy keeps the held copy under (the registry's 429 and 5xx)."""
        if isinstance(exc, OriginUnreachableError):
            return True
        policy = self.revalidation.get(door)
        return policy is not None and origin_status(exc)[0] in policy.keep_on_status

    def served_stale(self, door: str, url: str, exc: BaseException | None = None) -> None:
        """Count a held copy served unconfirmed; ``exc`` is why, logged (None: logged
        already, by the uplink client that kept it)."""
        self.stats.served_stale += 1
        self.stale[door] += 1
        if exc is not None:
            unreachable = isinstance(exc, OriginUnreachableError)
            event = "fetch.offline" if unreachable else "fetch.kept-held"
            log.warning(event, url=url, door=door, detail=f"serving the held copy: {exc}")

    # --- the control API's entry ----------------------------------------------------------------

    def lookup(self, url: str, sha256: bytes | None) -> bytes | None:
        """Digest of a complete local object for this request, or ``None``."""
        if sha256 is not None:
            manifest = self._store.lookup(sha256)
            if manifest is not None:
                return manifest.digest
        manifest = self._store.lookup(url)
        if manifest is None or (sha256 is not None and manifest.digest != sha256):
            # Not here, or the URL's stored content is an older version than the caller wants:
            # fetch (the fetch checks what arrives against ``sha256``).
            return None
        return manifest.digest

    @asynccontextmanager
    async def open(
        self, url: str, *, sha256: bytes | None = None, offset: int = 0, door: Door = "control"
    ) -> AsyncIterator[Opened]:
        """Deliver the object at ``url`` from ``offset``; errors are :class:`FrumitcacheError`."""
        self.check(url, door)
        digest = self.lookup(url, sha256)
        if digest is not None:
            self.stats.served_local += 1
            self._store.touch(digest)
            async with self._store.open_reader(digest, offset=offset) as reader:
                yield Opened("store", reader.size, reader, reader.files())
            return
        flight = self.ensure(url, sha256, door=door)
        await wait_any(flight.writing, flight.done)  # not the size: a pull streams without it
        if flight.error is not None and not flight.writing.is_set():
            raise flight.error
        yield Opened(
            _PULL_SOURCE[flight.provenance],
            flight.size,
            follow(self._store, flight, offset),
            follow(self._store, flight, offset, ObjectReader.files),
            flight.via if flight.provenance == "federation" else None,
        )

    async def wait_idle(self) -> None:
        """Until no flight is running."""
        while self.flights:
            flight = next(iter(self.flights.values()))
            await flight.done.wait()

    def check(self, url: str, door: Door) -> None:
        """Raise :class:`~frumitcache.errors.NotAllowedError` unless ``door`` may fetch ``url``.

        A ``sha256:`` key names content, not a place: the store or the site serves it, and
        the uplink client refuses it (not http/https) should it ever get that far.
        """
        if not url.startswith("sha256:"):
            self._fetcher.allow.check(url, door)

    def ensure(
        self,
        url: str,
        sha256: bytes | None,
        *,
        door: Door,
        revalidate: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
        revalidate_with: str | None = None,
        auth_door: str = "",
    ) -> Flight:
        """The flight bringing ``url`` here, started if none runs (single-flight per URL).

        ``door`` (apt, control, or site for a request from another member) must admit the
        URL: :class:`~frumitcache.errors.NotAllowedError` otherwise, before anything starts.
        ``revalidate``: the object may be held already, but the origin (through the seeder,
        once per freshness window for the site) decides whether it is still current.
        ``headers`` and ``auth_door`` shape the upstream request (``auth_door``'s
        :class:`~frumitcache.content.UpstreamAuth` signs it; ``door`` by default).
        """
        self.check(url, door)
        flight = self.flights.get(url)
        if flight is None:
            flight = Flight(
                url,
                sha256,
                revalidate=revalidate,
                door=door,
                headers=headers,
                revalidate_with=revalidate_with,
                auth_door=auth_door,
            )
            self.flights[url] = flight
            self._nursery.start_soon(self._run, flight)
        return flight

    # --- flights ------------------------------------------------------------------------------

    async def _run(self, flight: Flight) -> None:
        try:
            if self._site is None or self._site.solo:
                await self.from_origin(flight)
            else:
                await self._via_site(flight)
        except FrumitcacheError as exc:
            log.warning("fetch.failed", url=flight.url, error=exc.code, detail=str(exc))
            flight.error = exc
        except Exception as exc:
            # A bug in one fetch must not take the agent (and every other transfer) down.
            log.error("fetch.crashed", url=flight.url, detail=repr(exc), exc_info=exc)
            flight.error = AgentError(f"internal error while fetching {flight.url}: {exc!r}")
        finally:
            if self.flights.get(flight.url) is flight:
                del self.flights[flight.url]
            flight.done.set()
            flight.handover()

    async def fetch_origin(
        self,
        flight: Flight,
        *,
        hold: FetchHold | None = None,
        task_status: trio.TaskStatus[FetchInfo] = trio.TASK_STATUS_IGNORED,
    ) -> Manifest:
        """The one call to the uplink client; ``flight`` learns the size and metadata.
        ``hold``: the seeder's fence pauses the fetch with it while its lease has lapsed."""
        count_stale = self.served_stale

        class _Relay:
            def started(self, value: FetchInfo) -> None:
                if value.kept_status:  # held copy kept under an upstream error (logged there)
                    count_stale(flight.auth_door, flight.url)
                flight.started(value)
                task_status.started(value)

        policy = self.revalidation.get(flight.auth_door)
        manifest = await self._fetcher.fetch(
            flight.url,
            expected_digest=flight.sha256,
            revalidate=flight.revalidate,
            door=flight.door,
            headers=flight.headers,
            auth=self.auth.get(flight.auth_door),
            digest_header=policy.digest_header if policy else "",
            keep_on_status=policy.keep_on_status if policy else frozenset(),
            backoff=self.backoff.get(flight.auth_door),
            hold=hold,
            restarted=flight.restarted,
            task_status=cast("trio.TaskStatus[FetchInfo]", _Relay()),
        )
        if flight.revalidate or not flight.cached:
            # The origin was asked just now.
            self.window_for(flight.auth_door).mark(flight.url, self.clock())
        return manifest

    async def from_origin(self, flight: Flight) -> Manifest:
        self.stats.fetched_origin += 1
        flight.provenance = "uplink"
        flight.manifest = await self.fetch_origin(flight)
        return flight.manifest

    async def _via_site(self, flight: Flight) -> None:
        site = self._site
        assert site is not None
        node, _ = site.parts()
        cfg = self.site_config
        clock: FallbackClock | None = None  # started by the first failed attempt

        def observe(into: FallbackClock) -> None:
            named = node.seeder()
            into.observe(
                trio.current_time(),
                seeder_named=named is not None,
                site_heard=node.hears_site(),
                held=len(self._store.partial_chunks(flight.url)),
                site_chunks=flight.site_chunks,
                seeder=named,
            )

        while True:
            seeder = node.seeder()
            if seeder is None:
                with trio.move_on_after(cfg.lease_s * 3):
                    seeder = await node.wait_seeder()
            try:
                if seeder is None:
                    raise PeerError("no seeder elected in the site")
                if seeder[0] == site.node_id:
                    await self._seeder.fetch(flight, after_failover=self._failed_over(flight))
                    return
                await self._member.fetch(flight, seeder)
                return
            except SeederChanged:
                # The new seeder resumes the object (this node's chunks stay): not a reason
                # to leave the site.
                self.stats.failovers += 1
                flight.failovers += 1
                log.info("fetch.seeder-changed", url=flight.url)
                if clock is not None:
                    # A new term is the site's progress: it may be lapsed again by the next
                    # failed attempt (a loaded site's terms last seconds).
                    observe(clock)
                if seeder is not None and node.seeder() == seeder:
                    # It said it is not the seeder (its lease lapsed) but this node still
                    # follows it: ask again when that settles, not in a tight loop.
                    with trio.move_on_after(0.5):
                        await site.seeder_changed.wait()
                continue
            except PeerError as exc:
                if clock is None:
                    # Its first observation, at its start, is its baseline (counts and the
                    # seeder seen then restart clocks that start now anyway).
                    clock = FallbackClock(cfg.fallback, cfg.fallback_timeout_s, trio.current_time())
                observe(clock)
                verdict = clock.decide()
                if verdict is Verdict.ORIGIN:
                    self.stats.fallbacks += 1
                    log.warning(
                        "fetch.fallback-origin",
                        url=flight.url,
                        reason=str(exc),
                        rule=clock.fired() or "always",
                        waited_s=round(clock.waited(), 1),
                    )
                    await self.from_origin(flight)
                    return
                if verdict is Verdict.RETRY:
                    # Why a member waits on its site, for the day it leaves (the clocks it
                    # reads: `agent/_fallback.py`).
                    log.info(
                        "fetch.attempt-failed",
                        url=flight.url,
                        reason=str(exc),
                        site_live=clock.site_live,
                        held=clock.held,
                        site_chunks=clock.site_chunks,
                        waited_s=round(clock.waited(), 1),
                    )
                if verdict is Verdict.FAIL:
                    raise PeerError(
                        f"{exc}; not fetching {flight.url} from the origin because "
                        "site.fallback = never"
                    ) from None
                # Ask again when the site has a new seeder to ask, and at the latest in 0.5 s
                # (a holder that failed may be back).
                with trio.move_on_after(0.5):
                    await site.seeder_changed.wait()

    def _failed_over(self, flight: Flight) -> bool:
        """Did this fetch see a seeder change, or does the site know a partial of it?"""
        if flight.failovers:
            return True
        assert self._site is not None
        known = self._site.parts()[0].catalogue.get(flight.url)
        return known is not None and not known.complete
