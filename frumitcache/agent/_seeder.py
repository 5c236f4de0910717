"""The seeder's side of the content path: the one origin fetch of the site.

A member's ``FetchRequest`` starts (or joins) the flight for its URL here; every chunk is
announced to the site the moment it is stored, so members pull it while the rest still
arrives. A new seeder first takes what the site holds (:mod:`._takeover`: the seeder it
replaced, if alive, reports first; a whole object held is not fetched again), then resumes
the origin with HTTP Range after it. A seeder whose lease lapses holds its
origin fetch, and stops it when the site names another seeder (fencing, :class:`_Fence`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from typing import TYPE_CHECKING, TypedDict

import trio

from frumitcache._log import get_logger
from frumitcache.agent._fallback import STUCK_FACTOR
from frumitcache.agent._flight import Flight, first_error, wait_any
from frumitcache.agent._member import SeederChanged, wire_manifest
from frumitcache.agent._takeover import take_from_site
from frumitcache.content import ContentRequest, HttpMeta
from frumitcache.errors import (
    DigestMismatchError,
    FetchRestartedError,
    FrumitcacheError,
    NotInStoreError,
    ProtocolError,
)
from frumitcache.origin import Door, FetchHold, FetchInfo
from frumitcache.site import ErrorReply, FetchRequest, ObjectInfo, ObjectManifest
from frumitcache.store import Manifest

if TYPE_CHECKING:
    from frumitcache.agent._content import ContentService
    from frumitcache.agent._sitelink import SiteLink

log = get_logger("content")


class SeederRole:
    def __init__(self, service: ContentService) -> None:
        self._svc = service

    async def on_fetch_request(self, sender: str, request: FetchRequest) -> ObjectInfo | ErrorReply:
        """A member asks the seeder for ``request.url``: start (or join) the one fetch."""
        svc = self._svc
        site = svc.site
        assert site is not None
        store = svc.store
        catalogue = site.parts()[0].catalogue
        # The seeder decides, not the member: a URL none of its doors admits is refused here
        # (and the uplink client checks it, and every redirect, again).
        svc.check(request.url, "site")
        upstream = _upstream_of(request)
        if isinstance(upstream, ErrorReply):
            return upstream
        # A member's manifest answered without an upstream GET for it counts as one spared.
        spared = 1 if svc.is_manifest(request.door, request.url) else 0
        if request.revalidate and self._revalidation_due(
            request.url, request.revalidate_with, request.door
        ):
            # What the catalogue says may be stale: it is rebuilt from the revalidated object.
            catalogue.forget(request.url)
            svc.ensure(request.url, request.sha256, revalidate=True, **upstream)
            return catalogue.info(request.url, request_id=request.request_id, fetching=True)
        manifest = store.lookup(request.url)
        if manifest is None and request.sha256 is not None:
            manifest = store.lookup(request.sha256)
        if manifest is not None:
            if request.sha256 is not None and manifest.digest != request.sha256:
                return ErrorReply(
                    request.request_id,
                    DigestMismatchError.code,
                    f"{request.url} is stored with another SHA-256",
                )
            known = catalogue.get(request.url)
            if known is None or not known.complete:
                catalogue.put_manifest(wire_manifest(request.url, manifest))
                for digest in manifest.chunks:
                    catalogue.add_holder(digest, site.node_id)
            svc.stats.manifests_spared_for_members += spared
            return catalogue.info(request.url, request_id=request.request_id)
        if self._held_by_members(catalogue.get(request.url), request.sha256):
            # After a failover the new seeder may lack an object its members hold whole (their
            # Have reports named them): the asker pulls it from them, the origin is not asked.
            svc.stats.manifests_spared_for_members += spared
            return catalogue.info(request.url, request_id=request.request_id)
        if request.sha256 is not None and self._alias_by_digest(request.url, request.sha256):
            # Some member holds these bytes under another name (an imported .deb, another
            # mirror): content addressing makes the uplink unnecessary.
            svc.stats.manifests_spared_for_members += spared
            return catalogue.info(request.url, request_id=request.request_id)
        if svc.is_fetching(request.url):
            svc.stats.manifests_spared_for_members += spared  # the running fetch's one GET
        svc.ensure(request.url, request.sha256, **upstream)
        return catalogue.info(request.url, request_id=request.request_id, fetching=True)

    def _alias_by_digest(self, url: str, sha256: bytes) -> bool:
        """Record ``url`` as a name of a complete object the site holds by digest."""
        site = self._svc.site
        assert site is not None
        catalogue = site.parts()[0].catalogue
        known = catalogue.get(f"sha256:{sha256.hex()}")
        if not self._held_by_members(known, sha256):
            return False
        assert known is not None
        catalogue.put_manifest(dataclasses.replace(known, url=url))
        return True

    def _held_by_members(self, known: ObjectManifest | None, sha256: bytes | None) -> bool:
        """Is ``known`` a complete object (of ``sha256``, if given) every chunk of which some
        live member holds whole?"""
        site = self._svc.site
        assert site is not None
        if known is None or not known.complete or known.digest is None:
            return False
        if sha256 is not None and known.digest != sha256:
            return False
        catalogue = site.parts()[0].catalogue
        return all(site.holders(catalogue.holders(d).full) for d in known.chunks)

    def _revalidation_due(self, url: str, tied_to: str | None, door: str) -> bool:
        """May the origin be asked about ``url`` again (once per ``door``'s window for the
        site)?"""
        flight = self._svc.flights.get(url)
        if flight is not None and flight.revalidate:
            return False  # one is running: join it
        return self._svc.window_for(door).due(url, self._svc.clock(), tied_to=tied_to)

    async def fetch(self, flight: Flight, *, after_failover: bool = False) -> None:
        svc = self._svc
        site = svc.site
        assert site is not None
        node, _ = site.parts()
        store = svc.store
        window = svc.window_for(flight.auth_door)
        due = window.due(flight.url, svc.clock(), tied_to=flight.revalidate_with)
        if flight.revalidate and not due:
            # The site asked the origin about it within the window: what is held is current.
            flight.revalidate = False
        whole = await take_from_site(svc, flight, after_failover=after_failover)
        if whole is not None:
            # The site held it all (the seeder this node replaced, alive, had completed it):
            # the origin is not asked.
            flight.manifest, flight.provenance = whole, "site"
            svc.stats.fetched_site += 1
            await node.announce_object(wire_manifest(flight.url, whole, store.key_meta(flight.url)))
            return
        flight.provenance = "uplink"

        async def reannounce() -> None:
            # Re-elected: the new term's catalogue was rebuilt from what this node holds,
            # without the object's size and metadata the members need to follow each chunk.
            so_far = tuple(store.partial_chunks(flight.url))
            await node.announce_object(
                _partial(flight.url, flight.size, store.chunk_size, so_far, flight.meta)
            )

        fence = _Fence(
            svc.site_config.fallback_timeout_s, on_new_term=reannounce, chunk_size=store.chunk_size
        )
        fetched: list[Manifest] = []
        ended = trio.Event()  # the origin fetch returned

        async def from_origin(*, task_status: trio.TaskStatus[FetchInfo]) -> None:
            manifest = await svc.fetch_origin(flight, hold=fence.hold, task_status=task_status)
            fetched.append(manifest)
            ended.set()

        try:
            async with trio.open_nursery(strict_exception_groups=True) as nursery:
                nursery.start_soon(fence.run, site, nursery.cancel_scope)
                info: FetchInfo = await nursery.start(from_origin)
                if not info.cached:
                    # Members can take each chunk the moment it is announced once they know
                    # where the object ends (without the size they must lag one chunk), and
                    # answer with the origin's metadata from the start.
                    meta = HttpMeta(info.content_type, info.etag, info.last_modified)
                    so_far = tuple(store.partial_chunks(flight.url))
                    await node.announce_object(
                        _partial(flight.url, info.size, store.chunk_size, so_far, meta)
                    )
                await self._announce_chunks(flight, fence.hold, ended)
                fence.scope.cancel()
        except BaseExceptionGroup as group:
            ours, rest = group.split(FrumitcacheError)
            if ours is None or rest is not None:
                raise
            if not fence.fired:
                exc = first_error(ours)
                held = store.lookup(flight.url) if flight.revalidate else None
                if held is not None and svc.may_serve_held(flight.auth_door, exc):
                    # Offline, or the registry's 429/5xx (a backoff's refusal among them): the
                    # site goes on serving the copy it holds (to a member without one too), as
                    # a single node does; the origin is asked again on a later request.
                    svc.served_stale(flight.auth_door, flight.url, exc)
                    self._serve_held(flight, held)
                    await node.announce_object(
                        wire_manifest(flight.url, held, store.key_meta(flight.url))
                    )
                    return
                await node.announce_failure(flight.url, exc)
                raise exc from None
            # The fence's cancel can reach the announcing loop as an error, not as Cancelled:
            # the cancelled origin fetch aborts its writer while the loop sits in a shielded
            # call, and the store's chunk watch then ends with "the writer stopped (aborted)"
            # before any checkpoint. That is the fencing, not a failure to announce.
            log.info("seeder.fenced-unwind", url=flight.url, detail=str(first_error(ours)))
        if not fetched:
            # Only the fence ends the fetch without the origin's answer. Asking
            # ``site.is_seeder()`` now is no test of that: under load the lease lapses for a
            # moment (late acks) and a later ack revives it in the same term. A lapse while
            # the fetch unwound used to fail it ("fetch ended without a complete object", or
            # "the writer stopped"): the seeder's own pull failed, and the members waited for
            # an object that never came or failed with it. A fenced fetch goes round again
            # instead: as a member of a new seeder, or as this seeder resuming its partial.
            assert fence.fired
            # A chunk the fence's drain completed was not announced (nothing is while held):
            # the next seeder hears of it now, and takes it before this node's tail after it.
            stored = store.partial_chunks(flight.url)
            if stored:
                last = len(stored) - 1
                await node.announce_chunk(flight.url, last, stored[last], store.chunk_size)
            raise SeederChanged()
        # The fetcher's own answer, not ``store.lookup(url)``: the object it stored is the one
        # to announce, whatever the URL's key names by the time this task runs again.
        manifest = fetched[0]
        flight.manifest = manifest
        svc.stats.fetched_origin += 1
        await node.announce_object(wire_manifest(flight.url, manifest, store.key_meta(flight.url)))

    async def _announce_chunks(self, flight: Flight, hold: FetchHold, ended: trio.Event) -> None:
        """Announce each chunk of the origin fetch the moment it is stored, until the object
        is complete. When the fetch starts over (a federation link's bytes failed the object's
        SHA-256, and everything stored was dropped) the members hear that the chunks so far are
        void (:class:`FetchRestartedError`: they ask again) and the new chunks follow."""
        site = self._svc.site
        assert site is not None
        node = site.parts()[0]
        store = self._svc.store
        restarts = flight.restarts
        fresh = False  # started over: announce the new (partial) object before its chunks
        while True:
            try:
                # aclosing: a fenced loop closes the watch now, not when the GC finds it.
                async with aclosing(store.watch_chunks(flight.url)) as stored:
                    async for index, digest in stored:
                        await hold.wait_open()  # nothing announced while held
                        if fresh:
                            fresh = False
                            await node.announce_object(
                                _partial(flight.url, flight.size, store.chunk_size, (), flight.meta)
                            )
                        await node.announce_chunk(flight.url, index, digest, store.chunk_size)
                        try:
                            await site.seed_chunk(digest)
                        except FileNotFoundError:
                            # The fetch dropped the chunk meanwhile (it starts over): the
                            # watch ends with that next.
                            log.info("seeder.chunk-dropped", url=flight.url, index=index)
                return
            except NotInStoreError:
                # The writer stopped: the fetch failed (its error ends this nursery), or it
                # starts over; anything else that stopped it is the fetch's own answer.
                while flight.restarts == restarts and not ended.is_set():
                    await wait_any(flight.changed, ended)
                if flight.restarts == restarts:
                    raise
            restarts, fresh = flight.restarts, True
            log.warning("seeder.fetch-restarted", url=flight.url)
            await node.announce_failure(
                flight.url,
                FetchRestartedError(f"{flight.url}: the seeder's fetch started over"),
            )

    def _serve_held(self, flight: Flight, held: Manifest) -> None:
        flight.started(self._svc.fetcher.cached_info(flight.url, held))
        flight.manifest = held
        flight.provenance = "local"  # the origin was not reached: these bytes are the store's


class _Upstream(TypedDict):
    door: Door
    headers: tuple[tuple[str, str], ...]
    revalidate_with: str | None
    auth_door: str


def _upstream_of(request: FetchRequest) -> _Upstream | ErrorReply:
    """How the seeder fetches a member's request: under the union of its allow-lists
    (``site``), with the asking door's headers, signed by its own hook for that door."""
    pairs = []
    for line in request.headers:
        name, sep, value = line.partition(":")
        if not sep:
            return ErrorReply(request.request_id, ProtocolError.code, f"bad header {line[:40]!r}")
        pairs.append((name.strip(), value.strip()))
    try:
        ContentRequest(request.url, "site", headers=tuple(pairs))  # the seam's header rules
    except ProtocolError as exc:
        return ErrorReply(request.request_id, exc.code, str(exc))
    return _Upstream(
        door="site",
        headers=tuple(pairs),
        revalidate_with=request.revalidate_with,
        auth_door=request.door,
    )


class _Fence:
    """Fencing: a seeder whose lease lapses holds its origin fetch, and stops it only when
    the site shows that another node may be fetching. ``fired`` says it stopped it (the lease
    may be back by the time the fetch has unwound).

    Why holding is safe: while :attr:`hold` is held, no byte is read from the origin's socket
    (TCP flow control pauses the origin), none is written to the store and no chunk is
    announced. It goes on only when this node holds a live lease again: in the same term
    (which takes a majority's acks, which a site that elected another seeder will not give),
    or in a new term of its own won while no other seeder was named (it is then the one
    node allowed to fetch, as when a new seeder resumes a partial with Range). Going on costs
    no bytes; a stopped fetch loses what was in flight (the origin's socket buffers: up to a
    few MB, paid for again by the resume).

    So the fetch is stopped on evidence only: at once when the site names another seeder
    (who resumes the object from what members hold). A lapse without it is a loaded site's
    late acks: at N = 100 on 2 cores the lease came back in the same term 0.7 s after a
    fence at ``lease_s``, or this node won the next term 17 s after the lapse, again and
    again, each fence paying the bytes in flight once more. ``grace_s``
    (``site.fallback_timeout_s``) bounds the hold for liveness, as it bounds a member's wait:
    a seeder that does not hear its site after that long is cut off and lets go of
    the connection (and goes to the origin itself as a member would); one that hears its
    site keeps holding, up to :data:`STUCK_FACTOR` times that. ``on_new_term`` runs
    before a fetch goes on in a new term (the seeder re-announces the object to the new
    term's catalogue).

    Event-driven: the fence wakes when the site says the seeder changed (a step-down, a
    lapse the driver noticed) and, in case the driver is late, when the lease it last saw
    runs out; a renewed lease only moves that deadline. While held it wakes on
    ``site.lease_changed`` (a change, or a renewal the driver took) and at the bound."""

    def __init__(
        self,
        grace_s: float,
        *,
        on_new_term: Callable[[], Awaitable[None]] | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.chunk_size = chunk_size  # what a stopped fetch drains up to (None: no drain)
        self.scope = trio.CancelScope()
        self.hold = FetchHold()
        self.fired = False
        self.grace_s = grace_s
        self.on_new_term = on_new_term

    async def run(self, site: SiteLink, fetch: trio.CancelScope) -> None:
        with self.scope:
            ours = site.seeder()  # (us, term): the lease this fetch runs under
            why = "not the seeder"
            while ours is not None and ours[0] == site.node_id:
                while site.is_seeder():
                    changed = site.seeder_changed
                    with trio.move_on_at(site.lease_until()):
                        await changed.wait()
                self.hold.hold()
                log.warning("seeder.held", detail="lease lapsed; origin fetch held")
                back = await self._lease_back(site)
                if isinstance(back, str):
                    why = back
                    break
                if back != ours:
                    ours = back
                    log.info("seeder.new-term", term=back[1], detail="origin fetch goes on")
                    if self.on_new_term is not None:
                        await self.on_new_term()
                self.hold.release()
                log.info("seeder.lease-back", detail="origin fetch goes on")
            log.warning("seeder.fenced", detail="lease lost; origin fetch stopped", reason=why)
            self.fired = True
            # What already crossed the uplink joins the unfinished chunk the next seeder takes.
            if self.chunk_size is not None:
                await self.hold.drain(chunk_size=self.chunk_size)
            fetch.cancel()

    async def _lease_back(self, site: SiteLink) -> tuple[str, int] | str:
        """Wait for a live lease of ours: its ``(us, term)``, in the same term or a new one;
        else why not: at once when another seeder is named, after ``grace_s`` when this
        node is cut off from its site (not heard), after :data:`STUCK_FACTOR` times
        that in any case (the members' own limit)."""
        start = trio.current_time()
        check = start + self.grace_s
        while True:
            with trio.move_on_at(check):
                while True:
                    changed = site.lease_changed
                    seeder = site.seeder()
                    if seeder is not None and seeder[0] != site.node_id:
                        return f"site names {seeder}"
                    if seeder is not None and site.is_seeder():
                        return seeder
                    await changed.wait()
            if not site.hears_site():
                return f"cut off from the site for {check - start:g}s"
            if check - start >= STUCK_FACTOR * self.grace_s:
                return f"lease not back within {check - start:g}s"
            check += self.grace_s


def _partial(
    url: str, size: int | None, chunk_size: int, chunks: tuple[bytes, ...], meta: HttpMeta
) -> ObjectManifest:
    """The object the seeder starts fetching, as the site hears of it: its size and the
    origin's metadata from the start, so members can take each chunk as it is announced."""
    return ObjectManifest(
        url, None, size, chunk_size, chunks, False, meta.content_type, meta.etag, meta.last_modified
    )
