"""A member's plan for one object, as a state machine with no I/O and no clock.

The member asked the seeder for an object and now learns its chunks from three kinds of
news: the seeder's reply and later catalogue answers (:class:`~frumitcache.site.ObjectInfo`),
and announcements (:class:`~frumitcache.site.ChunkAnnounce`,
:class:`~frumitcache.site.ObjectAnnounce`, :class:`~frumitcache.site.FetchFailed`) that travel
over UDP and may be lost, duplicated or reordered. :meth:`MemberPlan.receive` takes one piece of
news and the time and returns what to do: offer chunks to the puller, note the size, stop
offering, fail. :meth:`MemberPlan.next_deadline` says when to ask the catalogue again should
no news arrive (a lost announcement must not stall the object), and :meth:`MemberPlan.on_timer`
asks. The trio shell (:mod:`frumitcache.agent._member`) only carries these out.
"""

from __future__ import annotations

from dataclasses import dataclass

from frumitcache.errors import FetchRestartedError, PeerError
from frumitcache.site import (
    ChunkAnnounce,
    FetchFailed,
    ObjectAnnounce,
    ObjectInfo,
    ObjectManifest,
    lists_alone,
)

#: Ask the catalogue again after this long without news while chunks are missing.
QUIET_S = 1.0
#: Ask the seeder again (a fetch request, not a lookup) after this long without learning
#: anything new: a seeder whose fetch stopped (fenced while its lease lapsed, then back in the
#: same term) or ended while it was deposed answers lookups with "partial, nobody fetching"
#: until someone asks it to fetch; a request joins a fetch that is still running.
REASK_S = 5.0
#: A member the seeder says pulls the object alone takes the chunks assigned to idle fellows
#: straight from the seeder once a second answer, this long after the first, says so again:
#: a herd's members ask within about a second, and the first to ask must not take them all.
ALONE_SETTLE_S = 1.0
#: While it pulls alone, a member asks whether it still does once a second, or less often for
#: a large object, whose description each answer carries: one second per this many chunks.
ALONE_CHUNKS_PER_ASK_S = 256


@dataclass(frozen=True, slots=True)
class OfferChunk:
    """Chunk ``index`` (``digest``, ``size`` bytes) can be pulled from ``holders`` now
    (again, with more holders, if it was offered before)."""

    index: int
    digest: bytes
    size: int
    holders: tuple[str, ...]
    downloading: tuple[str, ...]  # members pulling it right now, as of the last catalogue answer


@dataclass(frozen=True, slots=True)
class SizeKnown:
    size: int


@dataclass(frozen=True, slots=True)
class AllOffered:
    """Every chunk of the complete object was offered: close the offers."""


@dataclass(frozen=True, slots=True)
class AskCatalogue:
    """Ask the seeder's catalogue about the object (news may have been lost); ``fetch``: ask
    with a fetch request, so a seeder that is not fetching it resumes it."""

    url: str
    fetch: bool = False


@dataclass(frozen=True, slots=True)
class Alone:
    """Whether this member pulls the object alone, as the seeder said twice over at least
    ``ALONE_SETTLE_S`` (``True``, said again on each answer that confirms it), or no longer
    (``False``, once, after a ``True``)."""

    alone: bool


@dataclass(frozen=True, slots=True)
class Failed:
    """The seeder's fetch failed: fail the same way."""

    code: str
    message: str
    status: int
    retry_after: str = ""


Outgoing = OfferChunk | SizeKnown | AllOffered | AskCatalogue | Alone | Failed
News = ObjectInfo | ChunkAnnounce | ObjectAnnounce | FetchFailed


class MemberPlan:
    """What a member knows of an object it pulls; ``start`` chunks are already held. ``me``
    (this node's id) lets it hear the seeder say that it pulls alone."""

    def __init__(self, url: str, chunk_size: int, *, start: int = 0, me: str | None = None) -> None:
        self.url = url
        self.me = me
        self.chunk_size = chunk_size
        self.start = start
        self.digests: list[bytes] = []
        self.holders: dict[int, tuple[str, ...]] = {}
        self.partial: dict[int, tuple[str, ...]] = {}
        #: The origin's Content-Type, ETag and Last-Modified, once any manifest carried them.
        self.meta: tuple[str | None, str | None, str | None] = (None, None, None)
        self.digest: bytes | None = None
        self.size: int | None = None
        self.complete = False
        self.closed = False
        self._offered = 0
        self._more: set[int] = set()  # offered chunks that gained holders since
        self._quiet_since: float | None = None
        self._learned_at: float | None = None  # when news last told this plan something new
        self._learned = 0  # how many times news told it something new (chunks, holders, end)
        self._alone_since: float | None = None  # the first answer of a run saying "alone"
        self._alone_asked: float | None = None  # when "alone" was last asked about or said
        self._alone_told = False  # an Alone(True) went out and no Alone(False) since

    # --- input ------------------------------------------------------------------------------

    def receive(self, news: News, now: float) -> list[Outgoing]:
        """Take in one piece of news about any object; what to do about it."""
        size_before = self.size
        before = self._learned
        alone: Alone | None = None
        if isinstance(news, FetchFailed):
            if news.url != self.url:
                return []
            self.closed = True
            return [Failed(news.code, news.message, news.status, news.retry_after)]
        if isinstance(news, ObjectInfo):
            if news.manifest is None or news.url != self.url:
                return []
            if self._superseded(news.manifest):
                return self._restarted()
            self._absorb(news.manifest)
            for index, held in enumerate(news.holders):
                self.partial[index] = tuple(held.partial)
                self._add_holders(index, held.full)
            alone = self._hear_alone(news, now)
        elif isinstance(news, ChunkAnnounce):
            if news.url != self.url:
                return []
            if news.index == len(self.digests):
                self.digests.append(news.digest)
                self._learned += 1
            if news.index < len(self.digests) and self.digests[news.index] == news.digest:
                self._add_holders(news.index, (news.holder,))
        else:
            if news.manifest.url != self.url:
                return []
            if self._superseded(news.manifest):
                return self._restarted()
            self._absorb(news.manifest)
            for index in range(len(self.digests)):
                self._add_holders(index, (news.holder,))
        self._quiet_since = now
        if self._learned_at is None or self._learned != before:
            self._learned_at = now
        out: list[Outgoing] = []
        if self.size is not None and size_before is None:
            out.append(SizeKnown(self.size))
        if alone is not None:
            out.append(alone)
        return out + self._offers()

    def _hear_alone(self, info: ObjectInfo, now: float) -> Alone | None:
        """What the seeder's answer says of this member pulling alone (see :class:`Alone`)."""
        if self.me is not None and lists_alone(info, self.me):
            if self._alone_since is None:
                self._alone_since = now
            self._alone_asked = now
            if now - self._alone_since >= ALONE_SETTLE_S:
                self._alone_told = True
                return Alone(True)
            return None
        self._alone_since = self._alone_asked = None
        if self._alone_told:
            self._alone_told = False
            return Alone(False)
        return None

    def _alone_every(self) -> float:
        return max(QUIET_S, len(self.digests) / ALONE_CHUNKS_PER_ASK_S)

    def next_deadline(self) -> float | None:
        """When to ask the catalogue again if nothing is heard (None: nothing missing), or,
        pulling alone, whether that still holds (every ``QUIET_S``, less often for a large
        object: ``ALONE_CHUNKS_PER_ASK_S``)."""
        quiet = None if self.closed or self._quiet_since is None else self._quiet_since + QUIET_S
        alone = None if self._alone_asked is None else self._alone_asked + self._alone_every()
        return min((t for t in (quiet, alone) if t is not None), default=None)

    def on_timer(self, now: float) -> list[Outgoing]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
        if self._alone_asked is not None and now >= self._alone_asked + self._alone_every():
            self._alone_asked = now  # at most one question a second, answered or not
        if self.closed or self._quiet_since is None or now < self._quiet_since + QUIET_S:
            return [AskCatalogue(self.url)]
        self._quiet_since = now
        if self._learned_at is not None and now - self._learned_at >= REASK_S:
            self._learned_at = now  # at most one request per REASK_S
            return [AskCatalogue(self.url, fetch=True)]
        return [AskCatalogue(self.url)]

    # --- what is known ----------------------------------------------------------------------

    def chunk_len(self, index: int) -> int:
        if self.size is not None:
            return min(self.chunk_size, self.size - index * self.chunk_size)
        return self.chunk_size

    def _superseded(self, manifest: ObjectManifest) -> bool:
        """Does ``manifest`` list another chunk where this plan knows one? The seeder's fetch
        started over (its first bytes failed verification); the news of it may be lost."""
        if manifest.chunk_size != self.chunk_size:
            return False  # _absorb's error
        return any(a != b for a, b in zip(self.digests, manifest.chunks, strict=False))

    def _restarted(self) -> list[Outgoing]:
        self.closed = True
        why = f"{self.url}: the site lists other chunks than this member was pulling"
        return [Failed(FetchRestartedError.code, why, 0)]

    def _absorb(self, manifest: ObjectManifest) -> None:
        if manifest.chunk_size != self.chunk_size:
            raise PeerError(
                f"{self.url}: the site cuts chunks of {manifest.chunk_size} bytes, this node "
                f"{self.chunk_size}; every member needs the same store.chunk_size"
            )
        heard = (manifest.content_type, manifest.etag, manifest.last_modified)
        if any(heard):
            self.meta = heard
        if len(manifest.chunks) > len(self.digests):
            self.digests = list(manifest.chunks)
            self._learned += 1
        if manifest.size is not None:
            self.size = manifest.size
        if manifest.complete and not self.complete:
            self._learned += 1
            self.complete = True
            self.digest = manifest.digest

    def _add_holders(self, index: int, nodes: tuple[str, ...]) -> None:
        known = self.holders.get(index, ())
        new = tuple(n for n in dict.fromkeys(nodes) if n not in known)
        if new:
            self._learned += 1
            self.holders[index] = (*known, *new)
            if index < self._offered:
                self._more.add(index)

    def _offers(self) -> list[Outgoing]:
        """Chunks to offer now: a chunk's length is certain once the object's size is known
        (the seeder announces it as soon as the origin does), or a later chunk is known."""
        if self.closed:
            return []
        known_length = self.complete or self.size is not None
        end = len(self.digests) if known_length else max(len(self.digests) - 1, 0)
        # Every index is offered once, held ones too (the puller completes an object only
        # when all were offered; the shell's sink skips the first ``start``, already held).
        fresh = set(range(self._offered, end))
        self._offered = max(self._offered, end)
        indexes = sorted(fresh | {i for i in self._more if i >= self.start})
        self._more.clear()
        out: list[Outgoing] = [
            OfferChunk(
                i,
                self.digests[i],
                self.chunk_len(i),
                self.holders.get(i, ()),
                self.partial.get(i, ()),
            )
            for i in indexes
        ]
        if self.complete and self._offered >= len(self.digests):
            self.closed = True
            out.append(AllOffered())
        return out
