"""One URL being brought into this node's store, however many callers wait for it.

The content service keeps one :class:`Flight` per URL (the one single-flight of the content
path): the front doors, the library and other members' requests all join it. It runs in the
agent's nursery, not a caller's, so a caller that hangs up does not abort a fetch others share.
"""

from __future__ import annotations

import trio

from frumitcache.content import HttpMeta, Provenance
from frumitcache.errors import FrumitcacheError, NotInStoreError
from frumitcache.origin import Door, FetchInfo
from frumitcache.store import Manifest

#: Why an uplink fetch drops what it stored, unless told otherwise (origin/_job.py's links).
FEDERATION_RESTART = "a federation link's bytes failed the object's SHA-256"
#: Why a member drops what it pulled: its seeder now lists other chunks for the URL.
SITE_RESTART = "the site now lists other chunks for it"


class Flight:
    """``writing`` is set while a writer for the URL exists (callers may follow it),
    ``changed`` fires on every hand-over (member -> seeder) and size news, ``done`` when the
    flight ends (``error`` set if it failed). ``cached``: the origin (or the seeder) confirmed
    the copy already held, no new bytes came."""

    def __init__(
        self,
        url: str,
        sha256: bytes | None,
        *,
        revalidate: bool = False,
        door: Door = "site",
        headers: tuple[tuple[str, str], ...] = (),
        revalidate_with: str | None = None,
        auth_door: str = "",
    ) -> None:
        self.url = url
        self.door: Door = door  # whose allow-list the origin fetch (and its redirects) obeys
        self.sha256 = sha256
        self.revalidate = revalidate
        self.revalidate_with = revalidate_with
        self.headers = headers  # the asking door's upstream request headers
        self.auth_door = auth_door or door  # whose UpstreamAuth signs the origin requests
        self.meta = HttpMeta()
        self.cached = False
        self.manifest: Manifest | None = None
        self.provenance: Provenance = "uplink"
        self.via: str | None = None  # the federation link the uplink fetch came from, if any
        self.size: int | None = None
        self.writing = trio.Event()
        self.changed = trio.Event()
        self.done = trio.Event()
        self.error: FrumitcacheError | None = None
        self.failovers = 0
        #: The most chunks of the object the site was known to hold (the member's plans
        #: learn them from the seeder): the fallback clock counts its growth as progress.
        self.site_chunks = 0
        #: The uplink fetch dropped what it stored and started over (federated bytes failed
        #: verification): bytes read before that are void (see ``restarted``).
        self.restarts = 0
        self.restart_why = ""  # the last start-over's cause, for a reader's error

    # Handed to the origin fetcher as its task_status: "the writer exists, the size is known".
    def started(self, value: FetchInfo | None = None) -> None:
        if value is not None:
            self.meta = HttpMeta(value.content_type, value.etag, value.last_modified)
            self.cached = value.cached
            if value.size is not None:
                self.size = value.size
            if value.via is not None and not value.cached:
                # A parent or sibling site answered instead of the origin.
                self.provenance, self.via = "federation", value.via
        self.writing.set()
        self.handover()

    def restarted(self, value: FetchInfo | None, *, why: str = FEDERATION_RESTART) -> None:
        """The origin fetcher's ``restarted`` hook: ``None`` when it dropped what it stored
        (before a new writer exists), then the next answer's info. ``why`` names the cause
        for readers (a member that drops its chunks says so)."""
        if value is None:
            self.restarts += 1
            self.restart_why = why
            # Readers that start now wait for the new answer (its size, where it comes from).
            self.writing = trio.Event()
        else:
            self.meta = HttpMeta(value.content_type, value.etag, value.last_modified)
            self.size = value.size
            self.provenance, self.via = ("federation", value.via) if value.via else ("uplink", None)
            self.writing.set()
        self.handover()

    def learned(self, site_chunks: int) -> None:
        """A member's plan knows ``site_chunks`` chunks in the site (only growth counts:
        a new seeder's catalogue, or a new attempt, learning them again is not news)."""
        self.site_chunks = max(self.site_chunks, site_chunks)

    def handover(self) -> None:
        event, self.changed = self.changed, trio.Event()
        event.set()

    async def wait_started(self) -> None:
        """Until the size and metadata are known (a writer runs, or the object is complete),
        or the flight ended."""
        while not self.done.is_set() and (not self.writing.is_set() or self.size is None):
            await wait_any(self.changed, self.done)

    async def wait(self) -> Manifest:
        """Until the flight ended: its manifest, or its error raised."""
        await self.done.wait()
        if self.error is not None:
            raise self.error
        if self.manifest is None:
            raise FrumitcacheError(f"{self.url}: the fetch ended without a complete object")
        return self.manifest


async def wait_any(*events: trio.Event) -> None:
    """Until the first of ``events`` is set."""

    async def wait_then_cancel(event: trio.Event, scope: trio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    async with trio.open_nursery() as waiters:
        for event in events:
            waiters.start_soon(wait_then_cancel, event, waiters.cancel_scope)


def first_error(group: BaseExceptionGroup[FrumitcacheError]) -> FrumitcacheError:
    """The cause among a group of our errors (tasks that fail together fail for one cause).

    A task following a writer (the seeder's chunk watch) fails with :class:`NotInStoreError`
    ("the writer stopped") when the writer gives up: that is an echo, and may come first. The
    writer's own error, when it is in the group, is the cause (a digest mismatch must reach the
    members as one, not as "not in store")."""
    leaves = _leaves(group)
    return next((e for e in leaves if not isinstance(e, NotInStoreError)), leaves[0])


def _leaves(group: BaseExceptionGroup[FrumitcacheError]) -> list[FrumitcacheError]:
    out: list[FrumitcacheError] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            out += _leaves(exc)
        else:
            assert isinstance(exc, FrumitcacheError)
            out.append(exc)
    return out
