"""How the agent answers "give me the bytes of this URL": the one path every front door uses.

1. **Local**: the object is complete in the store (by digest when the caller knows it —
   content addressing makes the URL secondary — else by URL): serve it.
2. **Seeder** (or a one-node site): fetch it from the origin, single-flight, and announce each
   chunk to the site the moment it is stored. After a failover the new seeder first pulls the
   chunks live members already hold, then resumes the origin with HTTP Range after them.
3. **Member**: ask the seeder (it starts the one origin fetch), then pull each chunk from its
   holders as it is announced — peer HTTP for small chunks, the swarm for large ones — and
   append it to a local writer in order. If the seeder changes, ask the new one; if this node
   becomes the seeder, carry on as the seeder from what it holds.
4. **Fallback**: no seeder reachable → fetch the origin directly if ``site.fallback`` allows
   it (at once, or after ``site.fallback_timeout_s``), counted and logged.

Every URL passes the allow-list of the door that asked (:meth:`ContentService.ensure`), and the
seeder checks a member's ``FetchRequest`` against the union of its own lists: a member cannot
make the seeder fetch what no door of the seeder admits.

Every path writes into the store, and callers read from the store, so every byte a caller
gets was hashed first. One :class:`_Flight` per URL runs in the agent's nursery (not the
caller's): a caller that hangs up does not abort a fetch others share, and a failing fetch
never cancels a caller halfway through sending a frame. A caller follows the object through
writer hand-overs (member → seeder) by reopening its reader at the offset it reached.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar, cast

import trio

from frumitcache._log import get_logger
from frumitcache.agent._sitelink import SiteLink
from frumitcache.config import SiteConfig
from frumitcache.errors import (
    AgentError,
    DigestMismatchError,
    FrumitcacheError,
    NotInStoreError,
    PeerError,
    error_from_code,
)
from frumitcache.origin import Door, FetchInfo, OriginFetcher
from frumitcache.site import (
    ChunkAnnounce,
    ErrorReply,
    FetchFailed,
    FetchRequest,
    Lookup,
    ObjectAnnounce,
    ObjectInfo,
    ObjectManifest,
)
from frumitcache.store import HeldChunk, Manifest, ObjectReader, ObjectWriter, Store
from frumitcache.swarm import ChunkOffer, ChunkRef, fetch_object

log = get_logger("content")

# How often a seeder checks it still holds its lease while fetching (fencing).
_FENCE_CHECK_S = 0.2
# How often a member re-reads the seeder's catalogue while chunks are missing.
_POLL_S = 1.0


@dataclass(frozen=True, slots=True)
class Opened:
    """An object being delivered: where it comes from, its size if known, its chunks in order
    as bytes (``chunks``) or as descriptors of the verified chunk files (``files``, for a
    local client that copies them itself). Iterate one of the two."""

    source: str
    size: int | None
    chunks: AsyncIterator[bytes]
    files: AsyncIterator[HeldChunk]


# A reader's pieces: its bytes, or descriptors of its chunk files (both sized by ``len``).
_Piece = TypeVar("_Piece", bytes, HeldChunk)


def _bytes_of(reader: ObjectReader) -> AsyncIterator[bytes]:
    return reader


@dataclass(slots=True)
class ContentStatistics:
    served_local: int = 0
    fetched_origin: int = 0
    fetched_site: int = 0
    fallbacks: int = 0
    failovers: int = 0


class _SeederChanged(Exception):
    """The seeder a member was following is gone or replaced: ask again."""


class _Flight:
    """One URL being brought into this node's store, however many callers wait for it.

    ``writing`` is set while a writer for the URL exists (callers may follow it), ``changed``
    fires on every hand-over, ``done`` when the flight ends (``error`` set if it failed).
    """

    def __init__(
        self, url: str, sha256: bytes | None, *, revalidate: bool = False, door: Door = "site"
    ) -> None:
        self.url = url
        self.door: Door = door  # whose allow-list the origin fetch (and its redirects) obeys
        self.sha256 = sha256
        self.revalidate = revalidate
        self.info: FetchInfo | None = None
        self.manifest: Manifest | None = None
        self.source = "origin"
        self.size: int | None = None
        self.writing = trio.Event()
        self.changed = trio.Event()
        self.done = trio.Event()
        self.error: FrumitcacheError | None = None
        self.failovers = 0

    # Handed to the origin fetcher as its task_status: "the writer exists, the size is known".
    def started(self, value: FetchInfo | None = None) -> None:
        if value is not None:
            self.info = value
            if value.size is not None:
                self.size = value.size
        self.writing.set()
        self.handover()

    def handover(self) -> None:
        event, self.changed = self.changed, trio.Event()
        event.set()

    async def wait_writing_or_done(self) -> None:
        await wait_any(self.writing, self.done)


async def wait_any(*events: trio.Event) -> None:
    """Until the first of ``events`` is set."""

    async def wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    async with trio.open_nursery() as waiters:
        for event in events:
            waiters.start_soon(wait_then_cancel, event, waiters.cancel_scope)


class ContentService:
    """Finds or fetches objects for the control API and the other front doors."""

    def __init__(
        self,
        store: Store,
        fetcher: OriginFetcher,
        nursery: trio.Nursery,
        site: SiteLink | None = None,
        site_config: SiteConfig | None = None,
        *,
        index_window_s: float = 30.0,
    ) -> None:
        self._store = store
        self._fetcher = fetcher
        self._nursery = nursery
        self._site = site
        self._site_config = site_config or SiteConfig()
        self._flights: dict[str, _Flight] = {}
        self._index_window_s = index_window_s
        self._validated: dict[str, float] = {}  # seeder: when each URL was last revalidated
        self.stats = ContentStatistics()
        if site is not None:
            site.on_fetch = self._on_fetch_request

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

    def is_fetching(self, url: str) -> bool:
        """True while a flight for ``url`` runs on this node."""
        return url in self._flights

    # --- the front doors' entry ---------------------------------------------------------------

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
        await flight.wait_writing_or_done()
        if flight.error is not None and not flight.writing.is_set():
            raise flight.error
        yield Opened(
            flight.source,
            flight.size,
            self._follow(flight, offset, _bytes_of),
            self._follow(flight, offset, ObjectReader.files),
        )

    async def wait_idle(self) -> None:
        """Until no flight is running."""
        while self._flights:
            flight = next(iter(self._flights.values()))
            await flight.done.wait()

    def check(self, url: str, door: Door) -> None:
        """Raise :class:`~frumitcache.errors.NotAllowedError` unless ``door`` may fetch ``url``.

        A ``sha256:`` key names content, not a place: the store or the site serves it, and
        the uplink client refuses it (not http/https) should it ever get that far.
        """
        if not url.startswith("sha256:"):
            self._fetcher.allow.check(url, door)

    def ensure(
        self, url: str, sha256: bytes | None, *, door: Door, revalidate: bool = False
    ) -> _Flight:
        """The flight bringing ``url`` here, started if none runs (single-flight per URL).

        ``door`` (apt, control, or site for a request from another member) must admit the
        URL: :class:`~frumitcache.errors.NotAllowedError` otherwise, before anything starts.
        ``revalidate``: the object may be held already, but the origin (through the seeder,
        once per index window for the site) decides whether it is still current.
        """
        self.check(url, door)
        flight = self._flights.get(url)
        if flight is None:
            flight = _Flight(url, sha256, revalidate=revalidate, door=door)
            self._flights[url] = flight
            self._nursery.start_soon(self._run, flight)
        return flight

    async def _follow(
        self, flight: _Flight, offset: int, pieces: Callable[[ObjectReader], AsyncIterator[_Piece]]
    ) -> AsyncIterator[_Piece]:
        """The object's bytes from ``offset``, across writer hand-overs, until complete.

        With a wanted digest the object is read *by that digest* (the store follows a writer
        expecting it): an older object still stored under the URL is never handed over.
        """
        key: str | bytes = flight.sha256 if flight.sha256 is not None else flight.url
        delivered = offset
        while True:
            changed = flight.changed
            try:
                async with self._store.open_reader(key, offset=delivered) as reader:
                    if flight.size is None:
                        flight.size = reader.size
                    async for chunk in pieces(reader):
                        delivered += len(chunk)
                        yield chunk
                return
            except NotInStoreError:
                pass
            # The writer went away: finished, failed, or handed over to another flight stage.
            if self._store.lookup(key) is not None:
                continue
            if flight.done.is_set():
                raise flight.error or NotInStoreError(f"{flight.url} vanished while being read")
            await wait_any(changed, flight.done)

    # --- flights ------------------------------------------------------------------------------

    async def _run(self, flight: _Flight) -> None:
        try:
            if self._site is None or self._site.solo:
                await self._from_origin(flight)
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
            if self._flights.get(flight.url) is flight:
                del self._flights[flight.url]
            flight.done.set()
            flight.handover()

    async def _from_origin(self, flight: _Flight) -> Manifest:
        self.stats.fetched_origin += 1
        flight.source = "origin"
        flight.manifest = await self._fetcher.fetch(
            flight.url,
            expected_digest=flight.sha256,
            revalidate=flight.revalidate,
            door=flight.door,
            task_status=cast("trio.TaskStatus[FetchInfo]", flight),
        )
        return flight.manifest

    async def _via_site(self, flight: _Flight) -> None:
        site = self._site
        assert site is not None
        node, _ = site.parts()
        cfg = self._site_config
        unreachable_since: float | None = None
        while True:
            seeder = node.seeder()
            if seeder is None:
                with trio.move_on_after(cfg.lease_s * 3):
                    seeder = await node.wait_seeder()
            try:
                if seeder is None:
                    raise PeerError("no seeder elected in the site")
                if seeder[0] == site.node_id:
                    await self._as_seeder(flight, after_failover=self._failed_over(flight))
                    return
                await self._as_member(flight, seeder)
                return
            except _SeederChanged:
                self.stats.failovers += 1
                flight.failovers += 1
                log.info("fetch.seeder-changed", url=flight.url)
                continue
            except PeerError as exc:
                now = trio.current_time()
                unreachable_since = unreachable_since if unreachable_since is not None else now
                waited = now - unreachable_since
                if cfg.fallback == "always" or (
                    cfg.fallback == "after-timeout" and waited >= cfg.fallback_timeout_s
                ):
                    self.stats.fallbacks += 1
                    log.warning(
                        "fetch.fallback-origin",
                        url=flight.url,
                        reason=str(exc),
                        waited_s=round(waited, 1),
                    )
                    await self._from_origin(flight)
                    return
                if cfg.fallback == "never" and waited >= cfg.fallback_timeout_s:
                    raise PeerError(
                        f"{exc}; not fetching {flight.url} from the origin because "
                        "site.fallback = never"
                    ) from None
                await trio.sleep(0.5)

    def _failed_over(self, flight: _Flight) -> bool:
        """Did this fetch see a seeder change, or does the site know a partial of it?"""
        if flight.failovers:
            return True
        assert self._site is not None
        known = self._site.parts()[0].catalogue.get(flight.url)
        return known is not None and not known.complete

    # --- the seeder's side -----------------------------------------------------------------------

    async def _on_fetch_request(
        self, sender: str, request: FetchRequest
    ) -> ObjectInfo | ErrorReply:
        """A member asks the seeder for ``request.url``: start (or join) the one fetch."""
        site = self._site
        assert site is not None
        catalogue = site.parts()[0].catalogue
        # The seeder decides, not the member: a URL none of its doors admits is refused here
        # (and the uplink client checks it, and every redirect, again).
        self.check(request.url, "site")
        if request.revalidate and self._revalidation_due(request.url):
            # What the catalogue says may be stale: it is rebuilt from the revalidated object.
            catalogue.forget(request.url)
            self.ensure(request.url, request.sha256, revalidate=True, door="site")
            return catalogue.info(request.url, request_id=request.request_id, fetching=True)
        manifest = self._store.lookup(request.url)
        if manifest is None and request.sha256 is not None:
            manifest = self._store.lookup(request.sha256)
        if manifest is not None:
            if request.sha256 is not None and manifest.digest != request.sha256:
                return ErrorReply(
                    request.request_id,
                    DigestMismatchError.code,
                    f"{request.url} is stored with another SHA-256",
                )
            known = catalogue.get(request.url)
            if known is None or not known.complete:
                catalogue.put_manifest(_wire_manifest(request.url, manifest))
                for digest in manifest.chunks:
                    catalogue.add_holder(digest, site.node_id)
            return catalogue.info(request.url, request_id=request.request_id)
        if request.sha256 is not None and self._alias_by_digest(request.url, request.sha256):
            # Some member holds these bytes under another name (an imported .deb, another
            # mirror): content addressing makes the uplink unnecessary.
            return catalogue.info(request.url, request_id=request.request_id)
        self.ensure(request.url, request.sha256, door="site")
        return catalogue.info(request.url, request_id=request.request_id, fetching=True)

    def _alias_by_digest(self, url: str, sha256: bytes) -> bool:
        """Seeder: record ``url`` as a name of a complete object the site holds by digest."""
        assert self._site is not None
        catalogue = self._site.parts()[0].catalogue
        known = catalogue.get(f"sha256:{sha256.hex()}")
        if known is None or not known.complete or known.digest != sha256:
            return False
        if not all(catalogue.holders(d).full for d in known.chunks):
            return False
        catalogue.put_manifest(dataclasses.replace(known, url=url))
        return True

    def _revalidation_due(self, url: str) -> bool:
        """Seeder: may the origin be asked about ``url`` again (once per index window)?"""
        flight = self._flights.get(url)
        if flight is not None and flight.revalidate:
            return False  # one is running: join it
        return self._window_passed(url)

    def _window_passed(self, url: str) -> bool:
        last = self._validated.get(url)
        return last is None or trio.current_time() - last >= self._index_window_s

    async def _as_seeder(self, flight: _Flight, *, after_failover: bool = False) -> None:
        site = self._site
        assert site is not None
        node, _ = site.parts()
        if flight.revalidate and not self._window_passed(flight.url):
            # The site asked the origin about it within the window: what is held is current.
            flight.revalidate = False
        await self._pull_held_prefix(flight, after_failover=after_failover)
        flight.source = "origin"
        try:
            async with trio.open_nursery(strict_exception_groups=True) as nursery:
                fence = trio.CancelScope()
                nursery.start_soon(self._fence, fence, nursery.cancel_scope)
                info: FetchInfo = await nursery.start(self._seeder_fetch, flight)
                if info.size is not None:
                    flight.size = info.size
                    # Members can take each chunk the moment it is announced once they know
                    # where the object ends; without the size they must lag one chunk.
                    await node.announce_object(
                        ObjectManifest(
                            flight.url,
                            None,
                            info.size,
                            self._store.chunk_size,
                            tuple(self._store.partial_chunks(flight.url)),
                            False,
                        )
                    )
                chunk_size = self._store.chunk_size
                async for index, digest in self._store.watch_chunks(flight.url):
                    await node.announce_chunk(flight.url, index, digest, chunk_size)
                    await site.seed_chunk(digest)
                fence.cancel()
        except BaseExceptionGroup as group:
            ours, _ = group.split(FrumitcacheError)
            if ours is not None:
                exc = _first(ours)
                await node.announce_failure(
                    flight.url, exc.code, str(exc), getattr(exc, "status", 0) or 0
                )
                raise exc from None
            raise
        manifest = self._store.lookup(flight.url)
        if manifest is None:
            if not site.is_seeder():
                raise _SeederChanged()
            raise NotInStoreError(f"{flight.url}: fetch ended without a complete object")
        flight.manifest = manifest
        if flight.revalidate or not info.cached:
            # A fresh fetch or a conditional one: the origin was asked just now.
            self._validated[flight.url] = trio.current_time()
        self.stats.fetched_origin += 1
        await node.announce_object(_wire_manifest(flight.url, manifest))

    async def _seeder_fetch(
        self, flight: _Flight, *, task_status: trio.TaskStatus[FetchInfo] = trio.TASK_STATUS_IGNORED
    ) -> None:
        class _Relay:
            def started(self, value: FetchInfo) -> None:
                flight.started(value)
                task_status.started(value)

        await self._fetcher.fetch(
            flight.url,
            expected_digest=flight.sha256,
            revalidate=flight.revalidate,
            door=flight.door,
            task_status=cast("trio.TaskStatus[FetchInfo]", _Relay()),
        )

    async def _fence(self, fence: trio.CancelScope, fetch: trio.CancelScope) -> None:
        """Fencing: a seeder that loses its lease stops fetching at once."""
        assert self._site is not None
        with fence:
            while True:
                await trio.sleep(_FENCE_CHECK_S)
                if not self._site.is_seeder():
                    log.warning("seeder.fenced", detail="lease lost; origin fetch stopped")
                    fetch.cancel()
                    return

    async def _pull_held_prefix(self, flight: _Flight, *, after_failover: bool) -> None:
        """After a failover: bring in the chunks live members already hold, so the origin
        fetch resumes (with Range) after them instead of starting over."""
        site = self._site
        assert site is not None
        node, chunks = site.parts()
        if after_failover:
            # Members report what they hold to a new seeder (Have); give the reports a moment
            # to arrive so the origin resumes after every chunk the site still has.
            await _settle(lambda: _known_chunks(node.catalogue.get(flight.url)))
        info = node.catalogue.info(flight.url)
        manifest = info.manifest
        if manifest is None or manifest.complete or not manifest.chunks:
            return
        writer = self._store.open_writer(flight.url, expected_digest=flight.sha256)
        try:
            if list(writer.chunks) != list(manifest.chunks[: len(writer.chunks)]):
                await writer.discard()
                writer = self._store.open_writer(flight.url, expected_digest=flight.sha256)
            flight.writing.set()
            flight.handover()
            for index in range(len(writer.chunks), len(manifest.chunks)):
                holders = site.holders(
                    info.holders[index].full if index < len(info.holders) else ()
                )
                if not holders:
                    break
                digest = manifest.chunks[index]
                try:
                    await chunks.fetch(ChunkRef(digest.hex(), manifest.chunk_size), holders)
                except (PeerError, DigestMismatchError) as exc:
                    log.info(
                        "resume.chunk-unavailable", url=flight.url, index=index, detail=str(exc)
                    )
                    break
                await writer.add_chunk(digest)
            if writer.chunks:
                log.info("resume.prefix", url=flight.url, chunks=len(writer.chunks))
        finally:
            with trio.CancelScope(shield=True):
                await writer.abort()  # keeps the chunks: the origin fetch resumes after them
            flight.handover()

    # --- a member's side -------------------------------------------------------------------------

    async def _as_member(self, flight: _Flight, seeder: tuple[str, int]) -> None:
        site = self._site
        assert site is not None
        node, _ = site.parts()
        flight.source = "site"
        with node.open_subscription() as announcements:
            reply = await node.request(
                FetchRequest(0, flight.url, flight.sha256, revalidate=flight.revalidate)
            )
            if isinstance(reply, ErrorReply):
                if reply.code == PeerError.code and "not the seeder" in reply.message:
                    raise _SeederChanged()
                raise error_from_code(reply.code, reply.message, status=reply.status or None)
            plan = _MemberPlan(flight.url, reply, self._store.chunk_size)
            expected = flight.sha256 or (plan.digest if plan.complete else None)
            writer = self._store.open_writer(flight.url, expected_digest=expected)
            try:
                if list(writer.chunks) != plan.digests[: len(writer.chunks)]:
                    await writer.discard()
                    writer = self._store.open_writer(flight.url, expected_digest=expected)
                flight.writing.set()
                flight.handover()
                if plan.size is not None:
                    flight.size = plan.size
                manifest = await self._member_pull(flight, writer, plan, announcements, seeder)
            except BaseException:
                with trio.CancelScope(shield=True):
                    if not writer.closed:
                        await writer.abort()
                raise
        self.stats.fetched_site += 1
        flight.manifest = manifest
        await node.announce_object(_wire_manifest(flight.url, manifest))

    async def _member_pull(
        self,
        flight: _Flight,
        writer: ObjectWriter,
        plan: _MemberPlan,
        announcements: trio.MemoryReceiveChannel[ChunkAnnounce | ObjectAnnounce | FetchFailed],
        seeder: tuple[str, int],
    ) -> Manifest:
        site = self._site
        assert site is not None
        node, chunks = site.parts()
        start = len(writer.chunks)
        send, receive = trio.open_memory_channel[ChunkOffer](math.inf)
        send_closed: list[bool] = []

        def offer_ready() -> None:
            if send_closed:
                return
            indexes = sorted(set(plan.ready(0)) | {i for i in plan.more_holders if i >= start})
            plan.more_holders.clear()
            for index in indexes:
                holders = site.holders(plan.holders.get(index, ()))
                size = plan.chunk_len(index)
                # Warm: the object is complete and nobody else is downloading this chunk, so
                # there is no one to trade pieces with and a libtorrent dial per chunk would
                # only add its connect tick: take it straight from a holder over peer HTTP.
                direct = (
                    plan.complete
                    and bool(holders)
                    and not site.holders(plan.partial.get(index, ()))
                )
                digest = plan.digests[index].hex()
                if direct and all(h.seeder for h in holders):
                    # Only the seeder holds it: in a warm herd every member would pull it from
                    # the seeder's one LAN port (a star, measured 2.5x slower than before at
                    # N=8). As in a cold fetch, only the member assigned the chunk takes it
                    # directly; the others trade it through the swarm.
                    direct = chunks.assigned_here(digest, site.holders(site.other_members()))
                if size > site.config.swarm.small_chunk_bytes and not direct:
                    # Fellow fetchers trade pieces: every member is a potential holder.
                    holders = tuple(dict.fromkeys(holders + site.holders(site.other_members())))
                send.send_nowait(
                    ChunkOffer(
                        index, ChunkRef(digest, size), holders, direct=direct
                    )
                )
            if plan.complete and plan.offered_all():
                send_closed.append(True)
                send.close()

        async def sink(index: int, ref: ChunkRef) -> None:
            digest = bytes.fromhex(ref.digest)
            if index < start:
                return  # resumed: already in the writer
            await writer.add_chunk(digest)
            await node.announce_chunk(flight.url, index, digest, self._store.chunk_size)
            await site.seed_chunk(digest)

        async def listen() -> None:
            async for msg in announcements:
                if isinstance(msg, FetchFailed) and msg.url == flight.url:
                    raise error_from_code(msg.code, msg.message, status=msg.status or None)
                if plan.update(msg):
                    if flight.size is None and plan.size is not None:
                        flight.size = plan.size
                        flight.handover()
                    offer_ready()

        async def poll_catalogue() -> None:
            # Announcements are UDP, best effort: a lost one must not stall the object, so
            # the seeder's catalogue is asked again every second while chunks are missing.
            while True:
                await trio.sleep(_POLL_S)
                try:
                    reply = await node.request(Lookup(0, flight.url), timeout_s=_POLL_S)
                except PeerError:
                    continue  # watch_seeder deals with a seeder that is gone
                if isinstance(reply, ObjectInfo) and plan.merge(reply):
                    if flight.size is None and plan.size is not None:
                        flight.size = plan.size
                        flight.handover()
                    offer_ready()

        async def watch_seeder() -> None:
            while True:
                await trio.sleep(0.25)
                now = node.seeder()
                if now is None or now[0] != seeder[0]:
                    raise _SeederChanged()

        try:
            async with trio.open_nursery(strict_exception_groups=True) as nursery:
                nursery.start_soon(listen)
                nursery.start_soon(poll_catalogue)
                nursery.start_soon(watch_seeder)
                offer_ready()
                await fetch_object(
                    chunks, receive, sink, parallel=site.config.swarm.parallel_chunks
                )
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            changed, _ = group.split(_SeederChanged)
            if changed is not None:
                raise _SeederChanged() from None
            ours, _ = group.split(FrumitcacheError)
            if ours is not None:
                raise _first(ours) from None
            raise
        # The seeder's digest comes in MAC'd frames and each chunk of its list was verified on
        # arrival: trust it instead of hashing the whole object again.
        trusted = plan.digest if list(writer.chunks) == plan.digests else None
        manifest = await writer.finish(site_digest=trusted)
        if plan.digest is not None and manifest.digest != plan.digest:
            raise DigestMismatchError(
                f"{flight.url}: assembled SHA-256 {manifest.digest.hex()} differs from the "
                f"seeder's {plan.digest.hex()}"
            )
        return manifest


class _MemberPlan:
    """What a member knows of an object it pulls: chunk digests and holders so far, and the
    final size and digest once the seeder announces the object complete."""

    def __init__(self, url: str, reply: ObjectInfo, chunk_size: int) -> None:
        self.url = url
        self.chunk_size = chunk_size
        self.digests: list[bytes] = []
        self.holders: dict[int, tuple[str, ...]] = {}
        self.digest: bytes | None = None
        self.size: int | None = None
        self.complete = False
        self._offered = 0
        self.more_holders: set[int] = set()  # offered chunks that gained holders since
        #: Members downloading each chunk, as of the last catalogue answer.
        self.partial: dict[int, tuple[str, ...]] = {}
        if reply.manifest is not None:
            self._absorb(reply.manifest)
            for index, held in enumerate(reply.holders):
                self.holders[index] = tuple(held.full)
                self.partial[index] = tuple(held.partial)

    def _absorb(self, manifest: ObjectManifest) -> None:
        if manifest.chunk_size != self.chunk_size:
            raise PeerError(
                f"{self.url}: the site cuts chunks of {manifest.chunk_size} bytes, this node "
                f"{self.chunk_size}; every member needs the same store.chunk_size"
            )
        if len(manifest.chunks) > len(self.digests):
            self.digests = list(manifest.chunks)
        if manifest.size is not None:
            self.size = manifest.size
        if manifest.complete:
            self.complete = True
            self.digest = manifest.digest

    def update(self, msg: ChunkAnnounce | ObjectAnnounce | FetchFailed) -> bool:
        """Take in an announcement; True if it concerns this object."""
        if isinstance(msg, ChunkAnnounce) and msg.url == self.url:
            if msg.index == len(self.digests):
                self.digests.append(msg.digest)
            if msg.index < len(self.digests) and self.digests[msg.index] == msg.digest:
                self.holders[msg.index] = (*self.holders.get(msg.index, ()), msg.holder)
                if msg.index < self._offered:
                    self.more_holders.add(msg.index)
            return True
        if isinstance(msg, ObjectAnnounce) and msg.manifest.url == self.url:
            self._absorb(msg.manifest)
            for index in range(len(self.digests)):
                self.holders[index] = (*self.holders.get(index, ()), msg.holder)
            return True
        return False

    def merge(self, reply: ObjectInfo) -> bool:
        """Take in a fresh catalogue answer; True if it taught anything new."""
        if reply.manifest is None:
            return False
        before = (len(self.digests), self.size, self.complete)
        self._absorb(reply.manifest)
        grew = False
        for index, held in enumerate(reply.holders):
            self.partial[index] = tuple(held.partial)
            known = self.holders.get(index, ())
            new = tuple(n for n in held.full if n not in known)
            if new:
                self.holders[index] = (*known, *new)
                grew = True
                if index < self._offered:
                    self.more_holders.add(index)
        return grew or before != (len(self.digests), self.size, self.complete)

    def chunk_len(self, index: int) -> int:
        if self.size is not None:
            return min(self.chunk_size, self.size - index * self.chunk_size)
        return self.chunk_size

    def ready(self, start: int) -> range:
        """Indexes to offer now: a chunk's length is certain once the object's size is known
        (the seeder announces it as soon as the origin does), or a later chunk is known."""
        known_length = self.complete or self.size is not None
        end = len(self.digests) if known_length else max(len(self.digests) - 1, 0)
        first = max(self._offered, start)
        self._offered = max(self._offered, end)
        return range(first, end)

    def offered_all(self) -> bool:
        return self._offered >= len(self.digests)


def _known_chunks(manifest: ObjectManifest | None) -> int:
    return -1 if manifest is None else len(manifest.chunks)


async def _settle(
    measure: Callable[[], int], *, quiet_s: float = 0.5, limit_s: float = 2.0
) -> None:
    """Wait until ``measure()`` has not changed for ``quiet_s`` (at most ``limit_s``)."""
    with trio.move_on_after(limit_s):
        last, since = measure(), trio.current_time()
        while trio.current_time() - since < quiet_s:
            await trio.sleep(0.1)
            now = measure()
            if now != last:
                last, since = now, trio.current_time()


def _wire_manifest(url: str, manifest: Manifest) -> ObjectManifest:
    return ObjectManifest(
        url, manifest.digest, manifest.size, manifest.chunk_size, tuple(manifest.chunks), True
    )


def _first(group: BaseExceptionGroup[FrumitcacheError]) -> FrumitcacheError:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    assert isinstance(leaf, FrumitcacheError)
    return leaf
