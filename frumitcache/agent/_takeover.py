"""A seeder taking over an object mid-fetch: what the site holds first, the origin after.

A new seeder's catalogue starts from members' ``Have`` reports, which come when each member
hears of the new seeder (a few resends, then no more). The seeder it replaced is the one
that fetched: alive (its lease lapsed under load, and the site elected another) it holds
more of the object than any member, often all of it. So before the origin is asked:

1. :func:`awaited` (pure): the previous seeder's report is waited for while it has not
   reported, from the start of this node's term up to :data:`REPORT_WAIT_LEASES` leases
   (about the longest a loaded site's lease round takes) while it is alive, up to
   :data:`QUIET_WAIT_LEASES` while it is only quiet (a lapsed seeder beacons to everyone
   once per gap, longer than ``member_timeout_s``: this node's leases reach it, and its ack
   makes it alive; a seeder that crashed does not ack); nothing is waited for once the site
   holds the whole object, or once the term is older than that. Its peer port is probed
   once before the first wait: a connect accepted means its process lives (paused, or
   swapping: a stopped process's kernel still answers), and it is waited for as if alive even
   while quiet, since what it fetched crosses the uplink again if it is not; refused means it
   is gone (killed a moment ago, it is alive in the membership for ``member_timeout_s``), and
   it is not waited for;
2. after a failover, the others' reports settle (:func:`settle`: a quiet moment, bounded);
3. :func:`take_from_site` pulls whole chunks from their holders in order (each verified by its
   digest on arrival): all of them when the site holds the object complete (the origin is
   not asked at all), else as many as the site holds, and the origin fetch resumes after
   them with Range.

4. :func:`take_tail`: then the old seeder's unfinished chunk (the bytes of the chunk it was
   writing when it was fenced, kept in its memory), when it starts right after the chunks
   taken: the origin resumes after it. Its fence's drain may have completed one more chunk
   (what had crossed ran past a boundary), which it announces as its fetch stops: a tail one
   chunk past ours waits for that announcement (:data:`CATCH_UP_S`) and takes that chunk
   first. No hash covers part of a chunk, so those bytes are
   authenticated with the site key instead (:mod:`._tail`), as the manifests the old seeder
   wrote were.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio

from frumitcache._log import get_logger
from frumitcache.agent._flight import Flight
from frumitcache.agent._tail import tail_fits
from frumitcache.errors import DigestMismatchError, PeerError
from frumitcache.site import ObjectInfo, ObjectManifest, Reports
from frumitcache.store import Manifest, ObjectWriter
from frumitcache.swarm import ChunkRef

if TYPE_CHECKING:
    from frumitcache.agent._content import ContentService

log = get_logger("content")

#: How long, in leases from the start of its term, a new seeder waits for the report of the
#: seeder it replaced (while that one is alive): a stretched lease round takes up to 3.
REPORT_WAIT_LEASES = 3.0

#: How long a new seeder waits for the announcement of a chunk the old one's drain completed
#: (its tail starts after it), before it resumes the origin at its own end instead.
CATCH_UP_S = 2.0

#: ... while that one is only quiet (in the electorate, not heard within member_timeout_s,
#: not found dead): long enough for our leases to reach it and its ack to come back.
QUIET_WAIT_LEASES = 1.0


def awaited(
    reports: Reports,
    *,
    whole: bool,
    now: float,
    limit_s: float,
    quiet_limit_s: float,
    listening: bool | None = None,
) -> float | None:
    """Until when to wait for the previous seeder's report (``None``: not at all).

    ``whole``: the site already holds the object complete (nothing more to learn);
    ``limit_s`` / ``quiet_limit_s``: from the start of the term, while the previous seeder
    is alive / quiet; ``listening``: what a probe of its peer port found (True: its process
    lives, ``limit_s`` even while quiet; False: refused, gone, however recently it was heard;
    None: no answer, or not probed)."""
    previous = reports.previous
    if whole or previous is None or previous in reports.reported or listening is False:
        return None
    if previous in reports.alive or (listening and previous in reports.quiet):
        until = reports.began + limit_s
    elif previous in reports.quiet:
        until = reports.began + quiet_limit_s
    else:
        return None  # gone (forgotten, said bye, or found dead)
    return until if now < until else None


def catch_up_to(at: int, *, stored: int, chunk_size: int) -> int | None:
    """The chunk count to reach before a tail at ``at`` fits a writer holding ``stored``
    bytes (``None``: none to reach). A fenced seeder's drain completes one chunk at most."""
    if at == stored + chunk_size and stored % chunk_size == 0:
        return at // chunk_size
    return None


def held_whole(info: ObjectInfo, live: Callable[[tuple[str, ...]], bool]) -> bool:
    """Does the site hold the object of ``info`` complete, every chunk at a live member?"""
    manifest = info.manifest
    if manifest is None or not manifest.complete or manifest.digest is None:
        return False
    return len(info.holders) >= len(manifest.chunks) and all(
        live(h.full) for h in info.holders[: len(manifest.chunks)]
    )


async def settle(
    measure: Callable[[], int],
    wait_change: Callable[[], Awaitable[None]],
    *,
    quiet_s: float = 0.5,
    limit_s: float = 2.0,
) -> None:
    """Wait until ``measure()`` has not changed for ``quiet_s`` (at most ``limit_s``).

    It looks again only when ``wait_change`` returns (the catalogue took a report), never on
    a tick; a report that leaves ``measure()`` as it was does not extend the wait."""
    with trio.move_on_after(limit_s):
        last = measure()
        quiet_until = trio.current_time() + quiet_s
        while True:
            with trio.move_on_at(quiet_until) as quiet:
                await wait_change()
            if quiet.cancelled_caught:
                return
            now = measure()
            if now != last:
                last, quiet_until = now, trio.current_time() + quiet_s


def known_chunks(manifest: ObjectManifest | None) -> int:
    """What :func:`settle` watches: the chunks the catalogue lists (-1: object unknown)."""
    return -1 if manifest is None else len(manifest.chunks) + (1 if manifest.complete else 0)


def _chunk_len(manifest: ObjectManifest, index: int) -> int:
    if manifest.size is None:
        return manifest.chunk_size
    return min(manifest.chunk_size, manifest.size - index * manifest.chunk_size)


async def take_from_site(
    svc: ContentService, flight: Flight, *, after_failover: bool
) -> Manifest | None:
    """Bring in what live members hold of ``flight``'s object (see the module docstring): the
    complete object when the site holds it whole (returned: the origin is not asked), else
    the chunks it holds before the first one nobody holds (``None``: the origin fetch resumes
    after them)."""
    site = svc.site
    assert site is not None
    node = site.parts()[0]
    url = flight.url

    def live(nodes: tuple[str, ...]) -> bool:
        return bool(site.holders(nodes))

    def whole_now() -> bool:
        return held_whole(node.catalogue.info(url), live)

    lease_s = svc.site_config.lease_s
    start = trio.current_time()
    waited = False
    quiet = False  # the previous seeder was quiet (not alive) when the wait began
    listening: bool | None = None  # what the probe of its peer port found
    probed = False
    while True:
        reports = node.reports()
        previous = reports.previous
        now = trio.current_time()
        until = awaited(
            reports,
            whole=whole_now(),
            now=now,
            limit_s=REPORT_WAIT_LEASES * lease_s,
            quiet_limit_s=QUIET_WAIT_LEASES * lease_s,
            listening=listening,
        )
        if until is not None and not probed and previous is not None:
            # Once, before the first wait: a process killed a moment ago is still alive in
            # the membership for member_timeout_s, and a paused one turns quiet.
            probed = True
            listening = await node.listening(previous)
            continue
        if until is None:
            fields = {"url": url, "previous": previous, "quiet": quiet, "listening": listening}
            if reports.previous in reports.reported:
                # Logged also when it came before the takeover began (waited_s=0): no line at
                # all means the previous seeder was not waited for.
                log.info("takeover.reported", waited_s=round(now - start, 2), **fields)
            elif waited:
                log.info("takeover.no-report", **fields)
            elif listening is False:
                log.info("takeover.previous-gone", **fields)  # its peer port refused
            break
        # Woken by each report the catalogue takes (the previous seeder's ends the wait), and
        # at the bound: a quiet previous seeder that acked our lease since is alive now.
        quiet = quiet or (not waited and previous in reports.quiet)
        waited = True
        with trio.move_on_at(until):
            await node.wait_catalogue_change()
    if (after_failover or waited) and not whole_now():
        # Members report what they hold to a new seeder (Have), the previous seeder again
        # after the chunks it had in flight; give the reports a moment to arrive so the
        # origin resumes after every chunk the site still has.
        await settle(lambda: known_chunks(node.catalogue.get(url)), node.wait_catalogue_change)
    info = node.catalogue.info(url)
    manifest = info.manifest
    if manifest is None or not manifest.chunks:
        if reports.previous is not None:  # it may have stopped inside the first chunk
            await _tail_alone(svc, flight, reports.previous)
        return None
    whole = (
        held_whole(info, live)
        and not flight.revalidate  # the origin must be asked (the window says so)
        and flight.sha256 in (None, manifest.digest)
    )
    if manifest.complete and not whole:
        return None  # another version, or not all of it held: the origin's answer decides
    store = svc.store
    writer = store.open_writer(url, expected_digest=flight.sha256 or manifest.digest)
    try:
        if list(writer.chunks) != list(manifest.chunks[: len(writer.chunks)]):
            await writer.discard()
            flight.restarted(None)  # a reader of what was dropped must not go on
            writer = store.open_writer(url, expected_digest=flight.sha256 or manifest.digest)
        if whole and flight.size is None:
            flight.size = manifest.size  # readers may follow the object before it is complete
        flight.writing.set()
        flight.handover()
        await _take_chunks(svc, flight, writer)
        if whole and list(writer.chunks) == list(manifest.chunks):
            # Each chunk was verified by its digest on arrival, and the list is the
            # site-authenticated manifest's: its SHA-256 is trusted, as a member trusts it.
            taken = await writer.finish(site_digest=manifest.digest)
            log.info("takeover.whole", url=url, chunks=len(taken.chunks))
            return taken
        if reports.previous is not None and writer.offset == writer.stored:
            await take_tail(svc, flight, writer, reports.previous)
        if writer.chunks:
            log.info("resume.prefix", url=url, chunks=len(writer.chunks), offset=writer.offset)
        return None
    finally:
        with trio.CancelScope(shield=True):
            if not writer.closed:
                await writer.abort()  # keeps the chunks: the origin fetch resumes after them
        flight.handover()


async def take_tail(svc: ContentService, flight: Flight, writer: ObjectWriter, node: str) -> None:
    """Append the unfinished chunk member ``node`` (the seeder this one replaced) keeps of
    ``flight``'s object, when it starts at ``writer``'s end and was written for the same
    object; the writer's abort then keeps it for the origin fetch, which resumes after it."""
    site = svc.site
    assert site is not None
    url = flight.url
    try:
        tail = await site.fetch_tail(node, url)
    except PeerError as exc:
        log.info("takeover.tail-refused", url=url, previous=node, detail=str(exc))
        return
    if tail is None:
        return
    want = catch_up_to(tail.at, stored=writer.stored, chunk_size=writer.chunk_size)
    if want is not None:
        # Its fence's drain completed a chunk (announced as its fetch stopped, after the
        # report this node settled on): take that one first, and the tail fits after it.
        await _catch_up(svc, flight, writer, want)
    if not tail_fits(tail, stored=writer.stored, expected=writer.expected_digest, size=flight.size):
        log.info("takeover.tail-skipped", url=url, previous=node, at=tail.at, ours=writer.stored)
        return
    await writer.write(tail.data)
    log.info("takeover.tail", url=url, previous=node, at=tail.at, bytes=len(tail.data))


async def _take_chunks(
    svc: ContentService, flight: Flight, writer: ObjectWriter, *, upto: int | None = None
) -> None:
    """Pull the chunks after ``writer``'s (up to index ``upto``) from their live holders, in
    order, as the catalogue lists them now; stop at the first nobody can give."""
    site = svc.site
    assert site is not None
    node, chunks = site.parts()
    url = flight.url
    info = node.catalogue.info(url)
    manifest = info.manifest
    if manifest is None or list(writer.chunks) != list(manifest.chunks[: len(writer.chunks)]):
        return
    end = len(manifest.chunks) if upto is None else min(upto, len(manifest.chunks))
    for index in range(len(writer.chunks), end):
        holders = site.holders(info.holders[index].full if index < len(info.holders) else ())
        if not holders:
            break
        digest = manifest.chunks[index]
        try:
            await chunks.fetch(ChunkRef(digest, _chunk_len(manifest, index)), holders, direct=True)
        except (PeerError, DigestMismatchError) as exc:
            log.info("resume.chunk-unavailable", url=url, index=index, detail=str(exc))
            break
        await writer.add_chunk(digest)
        await node.announce_chunk(url, index, digest, svc.store.chunk_size)
        await site.seed_chunk(digest)


async def _catch_up(svc: ContentService, flight: Flight, writer: ObjectWriter, want: int) -> None:
    """Take chunks up to index ``want`` once the catalogue lists them (at most
    :data:`CATCH_UP_S`: the announcement is one frame, sent as the old fetch stopped)."""
    site = svc.site
    assert site is not None
    node = site.parts()[0]

    def listed() -> int:
        manifest = node.catalogue.get(flight.url)
        return 0 if manifest is None else len(manifest.chunks)

    with trio.move_on_after(CATCH_UP_S):
        while listed() < want:
            await node.wait_catalogue_change()
    await _take_chunks(svc, flight, writer, upto=want)
    log.info("takeover.caught-up", url=flight.url, chunks=len(writer.chunks), want=want)


async def _tail_alone(svc: ContentService, flight: Flight, node: str) -> None:
    """:func:`take_tail` when the site holds no whole chunk of the object."""
    writer = svc.store.open_writer(flight.url, expected_digest=flight.sha256)
    try:
        if writer.offset == writer.stored:
            await take_tail(svc, flight, writer, node)
    finally:
        with trio.CancelScope(shield=True):
            await writer.abort()  # keeps the tail: the origin fetch resumes after it
        flight.handover()
