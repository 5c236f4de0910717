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
from frumitcache.site import ChunkAnnounce, FetchFailed, ObjectAnnounce, ObjectInfo, ObjectManifest

#: Ask the catalogue again after this long without news while chunks are missing.
QUIET_S = 1.0
#: Ask the seeder again (a fetch request, not a lookup) after this long without learning
#: anything new: a seeder whose fetch stopped (fenced while its lease lapsed, then back in the
#: same term) or ended while it was deposed answers lookups with "partial, nobody fetching"
#: until someone asks it to fetch; a request joins a fetch that is still running.
REASK_S = 5.0


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
class Failed:
    """The seeder's fetch failed: fail the same way."""

    code: str
    message: str
    status: int
    retry_after: str = ""


Outgoing = OfferChunk | SizeKnown | AllOffered | AskCatalogue | Failed
News = ObjectInfo | ChunkAnnounce | ObjectAnnounce | FetchFailed


class MemberPlan:
    """What a member knows of an object it pulls; ``start`` chunks are already held."""

    def __init__(self, url: str, chunk_size: int, *, start: int = 0) -> None:
        self.url = url
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

    # --- input ------------------------------------------------------------------------------

    def receive(self, news: News, now: float) -> list[Outgoing]:
        """Take in one piece of news about any object; what to do about it."""
        size_before = self.size
        before = self._learned
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
        return out + self._offers()

    def next_deadline(self) -> float | None:
        """When to ask the catalogue again if nothing is heard (None: nothing missing)."""
        if self.closed or self._quiet_since is None:
            return None
        return self._quiet_since + QUIET_S

    def on_timer(self, now: float) -> list[Outgoing]:
        deadline = self.next_deadline()
        if deadline is None or now < deadline:
            return []
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
