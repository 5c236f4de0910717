"""A member's side of the content path: ask the seeder, then pull each chunk from its holders.

The seeder's reply and its announcements feed a :class:`~frumitcache.agent._plan.MemberPlan`
(no I/O); this shell carries out what the plan says: chunk offers go to the swarm puller
(peer HTTP for small chunks, libtorrent for large ones), which appends each verified chunk to a
local writer in order. It waits on events only: news from the site, the plan's one deadline
(ask the catalogue again after a quiet second) and :attr:`SiteLink.seeder_changed`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import trio

from frumitcache._log import get_logger
from frumitcache.agent._flight import SITE_RESTART, Flight, first_error
from frumitcache.agent._plan import (
    AllOffered,
    Alone,
    AskCatalogue,
    Failed,
    MemberPlan,
    News,
    OfferChunk,
    Outgoing,
    SizeKnown,
)
from frumitcache.content import HttpMeta
from frumitcache.errors import (
    DigestMismatchError,
    FetchRestartedError,
    FrumitcacheError,
    NotSeederError,
    PeerError,
    error_from_code,
)
from frumitcache.origin import META_CONTENT_TYPE, META_ETAG, META_LAST_MODIFIED
from frumitcache.site import ErrorReply, FetchRequest, Lookup, ObjectInfo, ObjectManifest
from frumitcache.store import Manifest, ObjectWriter
from frumitcache.swarm import ChunkOffer, ChunkRef, fetch_object

if TYPE_CHECKING:
    from frumitcache.agent._content import ContentService


class SeederChanged(Exception):
    """The seeder a member was following is gone or replaced: ask again."""


log = get_logger("content")


def wire_manifest(
    url: str, manifest: Manifest, meta: Mapping[str, str] | None = None
) -> ObjectManifest:
    """A complete stored object as the site hears of it, with the origin's metadata."""
    meta = meta or {}
    return ObjectManifest(
        url,
        manifest.digest,
        manifest.size,
        manifest.chunk_size,
        tuple(manifest.chunks),
        True,
        meta.get(META_CONTENT_TYPE),
        meta.get(META_ETAG),
        meta.get(META_LAST_MODIFIED),
    )


def meta_of(manifest: ObjectManifest) -> HttpMeta:
    return HttpMeta(manifest.content_type, manifest.etag, manifest.last_modified)


def _store_meta(meta: HttpMeta) -> dict[str, str]:
    fields = {
        META_CONTENT_TYPE: meta.content_type,
        META_ETAG: meta.etag,
        META_LAST_MODIFIED: meta.last_modified,
    }
    return {k: v for k, v in fields.items() if v is not None}


def seeder_moved(asked: tuple[str, int], now: tuple[str, int] | None) -> bool:
    """Whether a member pulling from the seeder it ``asked`` must ask again: the site now
    names another seeder, or the same node in a new term. A new term's seeder rebuilt its
    catalogue from reports, so what the member was told may be stale: a seeder whose own fetch
    finished while it was deposed held the whole object, and its new catalogue still said
    "partial, nobody fetching" until someone asked it (a 100-agent herd waited on that for
    10 minutes). No seeder named (a lapse) is not a move."""
    return now is not None and now != asked


def fetch_request(flight: Flight) -> FetchRequest:
    """What a member asks its seeder for ``flight`` (the first time, and again when stalled)."""
    return FetchRequest(
        0,
        flight.url,
        flight.sha256,
        revalidate=flight.revalidate,
        revalidate_with=flight.revalidate_with,
        door=flight.door,
        headers=tuple(f"{k}: {v}" for k, v in flight.headers),
    )


class MemberRole:
    def __init__(self, service: ContentService) -> None:
        self._svc = service

    async def fetch(self, flight: Flight, seeder: tuple[str, int]) -> None:
        svc = self._svc
        site = svc.site
        assert site is not None
        node, _ = site.parts()
        store = svc.store
        flight.provenance = "site"
        with node.open_subscription() as news:
            reply = await node.request(fetch_request(flight))
            if isinstance(reply, ErrorReply):
                if reply.code == NotSeederError.code:
                    raise SeederChanged()
                raise error_from_code(
                    reply.code,
                    reply.message,
                    status=reply.status or None,
                    retry_after=reply.retry_after,
                )
            known = reply.manifest
            if known is not None and known.complete and known.digest is not None:
                held = store.lookup(known.digest)
                if held is not None and (flight.sha256 in (None, known.digest)):
                    # The site's version is the one held here (a revalidated index): done.
                    if store.lookup(flight.url) != held:
                        store.map_key(flight.url, held.digest)
                    flight.meta = meta_of(known)
                    self._keep_meta(flight)
                    flight.cached = True
                    flight.size = held.size
                    flight.manifest = held
                    flight.writing.set()
                    flight.handover()
                    return
            complete = known is not None and known.complete
            expected = flight.sha256 or (known.digest if complete and known else None)
            writer = store.open_writer(flight.url, expected_digest=expected)
            try:
                listed = list(known.chunks) if known is not None else []
                if list(writer.chunks) != listed[: len(writer.chunks)]:
                    await writer.discard()
                    flight.restarted(None, why=SITE_RESTART)  # its readers must not go on
                    writer = store.open_writer(flight.url, expected_digest=expected)
                plan = MemberPlan(
                    flight.url, store.chunk_size, start=len(writer.chunks), me=site.node_id
                )
                first = plan.receive(reply, trio.current_time())
                flight.meta = HttpMeta(*plan.meta)
                flight.writing.set()
                flight.handover()
                manifest = await self._pull(flight, writer, plan, first, news, seeder)
            except BaseException:
                with trio.CancelScope(shield=True):
                    if not writer.closed:
                        await writer.abort()
                raise
        svc.stats.fetched_site += 1
        flight.manifest = manifest
        flight.meta = HttpMeta(*plan.meta)
        self._keep_meta(flight)
        await node.announce_object(wire_manifest(flight.url, manifest, store.key_meta(flight.url)))

    def _keep_meta(self, flight: Flight) -> None:
        """Remember the origin's metadata with the object: a later hit answers with it."""
        meta = dict(self._svc.store.key_meta(flight.url))
        meta.update(_store_meta(flight.meta))
        self._svc.store.set_key_meta(flight.url, meta)

    async def _pull(
        self,
        flight: Flight,
        writer: ObjectWriter,
        plan: MemberPlan,
        first: list[Outgoing],
        news: trio.MemoryReceiveChannel[News],
        seeder: tuple[str, int],
    ) -> Manifest:
        svc = self._svc
        site = svc.site
        assert site is not None
        node, chunks = site.parts()
        send, receive = trio.open_memory_channel[ChunkOffer](math.inf)
        kick = [trio.Event()]  # set when the plan's deadline may have moved
        alone: list[bytes] = []  # the chunks marked as pulled alone in the fetcher

        def pull_alone(now_alone: bool) -> None:
            if alone:
                chunks.pull_alone(alone, False)
                alone.clear()
            if now_alone:
                alone.extend(plan.digests)
                chunks.pull_alone(alone, True)

        def carry_out(todo: list[Outgoing]) -> None:
            flight.learned(len(plan.digests))  # the site's progress, for the fallback clock
            for step in todo:
                if isinstance(step, OfferChunk):
                    send.send_nowait(self._offer(plan, step))
                elif isinstance(step, SizeKnown):
                    if flight.size is None:
                        flight.meta = HttpMeta(*plan.meta)
                        flight.size = step.size
                        flight.handover()
                elif isinstance(step, AllOffered):
                    send.close()
                elif isinstance(step, Failed):
                    if step.code == FetchRestartedError.code:
                        # The seeder's fetch dropped its chunks and started over: ask it
                        # again (the chunks this node holds of it are checked against the
                        # new list, and dropped when they differ).
                        raise SeederChanged()
                    raise error_from_code(
                        step.code,
                        step.message,
                        status=step.status or None,
                        retry_after=step.retry_after,
                    )
                elif isinstance(step, AskCatalogue):
                    nursery.start_soon(ask_catalogue, step.fetch)
                elif isinstance(step, Alone):
                    pull_alone(step.alone)
            kick[0].set()

        async def sink(index: int, ref: ChunkRef) -> None:
            if index < plan.start:
                return  # resumed: already in the writer
            await writer.add_chunk(ref.digest)
            await node.announce_chunk(flight.url, index, ref.digest, svc.store.chunk_size)
            await site.seed_chunk(ref.digest)

        async def listen() -> None:
            async for msg in news:
                carry_out(plan.receive(msg, trio.current_time()))

        async def ask_catalogue(fetch: bool) -> None:
            # Announcements are UDP, best effort: a lost one must not stall the object. Long
            # without anything new, ask with a fetch request: a seeder whose fetch stopped
            # (fenced, then its lease back in the same term) resumes it, one still fetching is
            # joined (see REASK_S).
            ask = fetch_request(flight) if fetch else Lookup(0, flight.url)
            if fetch:
                log.info("fetch.reask", url=flight.url, seeder=seeder[0])
            try:
                reply = await node.request(ask, timeout_s=1.0)
            except PeerError:
                return  # a seeder that is gone shows up as seeder_changed
            if isinstance(reply, ObjectInfo):
                carry_out(plan.receive(reply, trio.current_time()))
            elif isinstance(reply, ErrorReply) and reply.code == NotSeederError.code:
                raise SeederChanged()

        async def timer() -> None:
            while True:
                kick[0] = trio.Event()
                deadline = plan.next_deadline()
                with trio.move_on_at(math.inf if deadline is None else deadline):
                    await kick[0].wait()
                    continue
                carry_out(plan.on_timer(trio.current_time()))

        async def watch_seeder() -> None:
            # A lapse of the seeder's lease as seen here (a loaded seeder or member missed
            # lease rounds) is not a change: the pull goes on from the holders. A new term
            # (another seeder, or the same one elected again) makes the member ask it (it
            # resumes the object); none named for a while ends the attempt (the fallback clock
            # decides what next).
            lapse = site.config.site.lease_s * 3
            while True:
                changed = site.seeder_changed
                now = node.seeder()
                if seeder_moved(seeder, now):
                    raise SeederChanged()
                if now is None:
                    with trio.move_on_after(lapse):
                        await changed.wait()
                        continue
                    raise PeerError(f"no seeder named for {lapse:g} s")
                await changed.wait()

        try:
            async with trio.open_nursery(strict_exception_groups=True) as nursery:
                nursery.start_soon(listen)
                nursery.start_soon(timer)
                nursery.start_soon(watch_seeder)
                carry_out(first)
                await fetch_object(
                    chunks, receive, sink, parallel=site.config.swarm.parallel_chunks
                )
                nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            changed, _ = group.split(SeederChanged)
            if changed is not None:
                raise SeederChanged() from None
            ours, _ = group.split(FrumitcacheError)
            if ours is not None:
                raise first_error(ours) from None
            raise
        finally:
            pull_alone(False)
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

    def _offer(self, plan: MemberPlan, step: OfferChunk) -> ChunkOffer:
        """The plan's offer with transports chosen: who to dial, and whether directly."""
        site = self._svc.site
        assert site is not None
        chunks = site.parts()[1]
        holders = site.holders(step.holders)
        # Warm: the object is complete and nobody else is downloading this chunk, so there is
        # no one to trade pieces with and a libtorrent dial per chunk would only add its
        # connect tick: take it straight from a holder over peer HTTP.
        direct = plan.complete and bool(holders) and not site.holders(step.downloading)
        if direct and all(h.seeder for h in holders):
            # Only the seeder holds it: in a warm herd every member would pull it from the
            # seeder's one LAN port (a star, measured 2.5x slower than before at N=8). As in a
            # cold fetch, only the member assigned the chunk takes it directly; the others
            # trade it through the swarm.
            direct = chunks.assigned_here(step.digest, site.holders(site.other_members()))
        if step.size > site.config.swarm.small_chunk_bytes and not direct:
            # Fellow fetchers trade pieces: every member is a potential holder.
            holders = tuple(dict.fromkeys(holders + site.holders(site.other_members())))
        return ChunkOffer(step.index, ChunkRef(step.digest, step.size), holders, direct=direct)
