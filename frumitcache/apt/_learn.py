"""Learning URL -> SHA-256 from the Packages/Release files the proxy serves, off the request path.

The proxy waits for pending learning before it looks a .deb up, so a .deb requested right after
its Packages file is still checked. An index is read piece by piece as the store releases it and
parsed in a worker thread as it goes (:class:`~._packages.IndexLearner`): nothing holds the
whole index, and a corrupt or hostile one (a bomb, an endless line) is given up within bounds.
Whatever goes wrong while learning costs that index only: it is logged and never reaches the
nursery that owns the task, which is the proxy's listener.
"""

from __future__ import annotations

import lzma
import zlib
from typing import Any

import trio

from frumitcache._log import get_logger
from frumitcache.apt._guard import RateLimitedLog
from frumitcache.apt._packages import HashBook, IndexLearner, index_role
from frumitcache.apt._requests import Target
from frumitcache.apt._status import ProxyMetrics
from frumitcache.content import Content, ContentInfo
from frumitcache.errors import FrumitcacheError

log = get_logger("apt")

MAX_INDEXES = 4096  # index URLs remembered (what was learned, by-hash generations)
LEARN_WAIT_S = 60.0  # longest a .deb waits for a Packages file still being learned
# What a corrupt or hostile index raises (IndexTooLargeError is a ValueError); anything else
# is a bug and is logged with its traceback.
_CORRUPT = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError, FrumitcacheError)


class Learner:
    """The hashes learned so far (:attr:`book`, :attr:`by_hash`) and the learning in flight."""

    def __init__(
        self,
        book: HashBook | None,
        metrics: ProxyMetrics | None = None,
        errors: RateLimitedLog | None = None,
    ) -> None:
        self.book = book
        self.metrics = metrics or ProxyMetrics()
        self._errors = errors or RateLimitedLog(log)
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()
        self._learned: dict[str, tuple[Any, ...]] = {}
        # "ALGO/hex" of a by-hash URL -> (the index URL it stands for, its SHA-256), from the
        # Release files learned: apt fetches Packages by hash, and the name says how to parse
        # it and where its paths start.
        self.by_hash: dict[str, tuple[str, str]] = {}
        # Release URL -> the by-hash keys of its last two versions: older ones are forgotten,
        # so the map stays the size of the archives in use, however often they are republished.
        self._generations: dict[str, list[tuple[str, ...]]] = {}

    def wanted(self, target: Target, info: ContentInfo) -> tuple[str, str] | None:
        """``(role, url to learn it as)`` if this index should be learned now."""
        if self.book is None:
            return None
        url = target.url
        if target.by_hash is not None and target.by_hash in self.by_hash:
            url = self.by_hash[target.by_hash][0]
        role = index_role(url)
        token = (info.size, info.sha256, info.meta.etag, info.meta.last_modified)
        if role is None or self._learned.get(url) == token:
            return None
        self._learned.pop(url, None)
        self._learned[url] = token
        while len(self._learned) > MAX_INDEXES:  # forget the index seen longest ago
            del self._learned[next(iter(self._learned))]
        return role, url

    def start(self, nursery: trio.Nursery, url: str, role: str, content: Content) -> None:
        self._pending += 1
        self._idle = trio.Event() if self._idle.is_set() else self._idle
        nursery.start_soon(self._learn, url, role, content)

    async def wait_idle(self) -> None:
        if self._idle.is_set():
            return  # nothing being learned, the usual case: no cancel scope to set up
        with trio.move_on_after(LEARN_WAIT_S):
            await self._idle.wait()

    def _remember_by_hash(self, url: str, learned: dict[str, tuple[str, str]]) -> None:
        if not learned:
            return
        generations = self._generations.setdefault(url, [])
        generations.append(tuple(learned))
        self.by_hash.update(learned)
        while len(generations) > 2:
            keep = {k for g in generations[1:] for k in g}
            for key in generations.pop(0):
                if key not in keep:
                    self.by_hash.pop(key, None)
        while len(self._generations) > MAX_INDEXES:
            for gen in self._generations.pop(next(iter(self._generations))):
                for key in gen:
                    self.by_hash.pop(key, None)

    async def _learn(self, url: str, role: str, content: Content) -> None:
        assert self.book is not None
        book = self.book
        learner = IndexLearner(url, role)

        def step(piece: bytes | None) -> int:
            return book.record(learner.close() if piece is None else learner.feed(piece))

        count = 0
        try:
            async with content.read(0, content.info.size) as pieces:
                async for piece in pieces:
                    count += await trio.to_thread.run_sync(step, piece)
            count += await trio.to_thread.run_sync(step, None)
            self._remember_by_hash(url, learner.by_hash)
            self.metrics.indexes_learned += 1
            log.debug("apt.learned", url=url, hashes=count)
        except Exception as exc:
            # A corrupt index (zlib.error, lzma.LZMAError, ...), a bomb, a failed read or a bug:
            # this index is not learned (apt rejects a corrupt one too); nothing else is hurt.
            self._learned.pop(url, None)
            self.metrics.indexes_not_learned += 1
            expected = isinstance(exc, _CORRUPT)
            self._errors.exception(
                "learn" if expected else "learn-bug",
                f"could not learn hashes from {url}: {exc!r}",
                exc,
                trio.current_time(),
                traceback=not expected,
            )
        finally:
            self._pending -= 1
            if self._pending == 0:
                self._idle.set()
