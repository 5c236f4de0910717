"""The one-node content source: the local store plus the origin fetcher.

:class:`LocalSource` decides per request whether the stored copy may be served as is, must be
revalidated with the origin (index files, at most once per ``apt.index_window_s`` per URL),
or fetched. A fetch runs in the source's own nursery, not the request's: when apt hangs up,
the object still completes for the next client. The bytes are read from the store while the
fetch is still writing them (cut-through); for an object with an expected SHA-256 the last
piece is held back until the whole object matched it, so a bad object never reaches apt
complete, and the store never keeps it.

Offline mode: if the origin is unreachable and the store holds a copy, the copy is served.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from frumitcache.apt._requests import FileKind
from frumitcache.apt._source import Content, ContentInfo, Origin
from frumitcache.content import FreshnessWindow, parse_http_date
from frumitcache.errors import (
    FrumitcacheError,
    OriginStatusError,
    OriginUnreachableError,
    single_error,
)

log = logging.getLogger(__name__)

# Keys the origin fetcher keeps in store.key_meta(url) (frumitcache.origin.META_*).
_META_ETAG = "etag"
_META_LAST_MODIFIED = "last_modified"
_META_CONTENT_TYPE = "content_type"


class _Manifest(Protocol):
    @property
    def digest(self) -> bytes: ...
    @property
    def size(self) -> int: ...


class _Store(Protocol):
    """The part of :class:`frumitcache.store.Store` this source uses."""

    def lookup(self, key_or_digest: str | bytes) -> Any: ...
    def key_meta(self, key: str) -> dict[str, str]: ...
    def map_key(self, key: str, digest: bytes) -> None: ...
    def open_reader(
        self, key_or_digest: str | bytes, offset: int = 0
    ) -> AbstractAsyncContextManager[Any]: ...


class _FetchInfo(Protocol):
    @property
    def size(self) -> int | None: ...
    @property
    def etag(self) -> str | None: ...
    @property
    def last_modified(self) -> str | None: ...
    @property
    def content_type(self) -> str | None: ...
    @property
    def cached(self) -> bool: ...


class _Fetcher(Protocol):
    async def fetch(
        self,
        url: str,
        *,
        expected_digest: bytes | None = ...,
        expected_size: int | None = ...,
        revalidate: bool = ...,
        task_status: Any = ...,
    ) -> Any: ...


@dataclass(slots=True)
class _Flight:
    """The outcome of a fetch running in the source's nursery."""

    done: trio.Event = field(default_factory=trio.Event)
    manifest: _Manifest | None = None
    error: FrumitcacheError | None = None

    async def wait(self) -> _Manifest:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        if self.manifest is None:
            raise OriginUnreachableError("the fetch was cancelled")
        return self.manifest


class _Started:
    """Passes the fetcher's ``task_status.started`` through and remembers that it happened."""

    def __init__(self, outer: trio.TaskStatus[Any]) -> None:
        self.outer = outer
        self.value: Any = None
        self.happened = False

    def started(self, value: Any = None) -> None:
        self.happened = True
        self.value = value
        self.outer.started(value)


@dataclass(frozen=True, slots=True)
class _LocalContent:
    info: ContentInfo
    store: _Store
    key: str | bytes  # a digest for complete objects (stable), the URL while it is fetched
    flight: _Flight | None  # the fetch still writing it, if any
    hold_back: bool  # release the last piece only once the whole object is verified

    def read(self, start: int, end: int) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        return self._read(start, end)

    @asynccontextmanager
    async def _read(self, start: int, end: int) -> AsyncIterator[AsyncIterator[bytes]]:
        try:
            async with self.store.open_reader(self.key, offset=start) as reader:
                yield self._pieces(reader, start, end)
        except FrumitcacheError:
            # A reader following a failed fetch only knows "the writer failed"; the fetch's
            # own error (digest mismatch, origin status) is the honest one.
            if self.flight is not None and self.flight.error is not None:
                raise self.flight.error from None
            raise

    async def _pieces(self, reader: Any, start: int, end: int) -> AsyncIterator[bytes]:
        pos = start
        if pos >= end:
            return
        async for chunk in reader:
            # Slice only a range's last piece: a 4 MiB copy per chunk costs a Pi dearly.
            piece = chunk if len(chunk) <= end - pos else chunk[: end - pos]
            if not piece:
                continue
            if pos + len(piece) >= self.info.size and self.flight is not None:
                # The object's last bytes: only once the fetch verified and stored it all.
                await self.flight.wait()
            elif self.hold_back and self.flight is not None and pos + len(piece) >= end:
                await self.flight.wait()
            pos += len(piece)
            yield piece
            if pos >= end:
                return
        if pos < end:
            if self.flight is not None:
                await self.flight.wait()
            raise OriginUnreachableError(
                f"the object ended at byte {pos}, {self.info.size} announced"
            )


class LocalSource:
    """Content from this node's store, fetched from the origin when needed.

    ``nursery`` owns the fetches (give it a lifetime at least as long as the proxy's);
    ``clock`` gives the time for the index window (trio's clock by default).
    """

    def __init__(
        self,
        store: Any,
        fetcher: Any,
        nursery: trio.Nursery,
        *,
        index_window_s: float,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.store: _Store = store
        self.fetcher: _Fetcher = fetcher
        self._nursery = nursery
        self.window = FreshnessWindow(index_window_s)
        self._clock = clock

    async def open(
        self,
        url: str,
        *,
        kind: FileKind,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        revalidate: bool = False,
    ) -> Content:
        digest = bytes.fromhex(expected_sha256) if expected_sha256 else None
        now = self._clock()
        held: _Manifest | None = self.store.lookup(url)
        if digest is not None:
            same = self.store.lookup(digest)
            if same is not None:
                # Content-addressed: the bytes are here, maybe under another mirror's URL.
                if held is None or held.digest != digest:
                    self.store.map_key(url, digest)
                return self._complete(url, same, "local")
            if held is not None and held.digest != digest:
                held = None  # an older version of the URL; the index wants another
            if kind is FileKind.INDEX and "/by-hash/" not in url:
                # An index pinned by the Release we served: its by-hash twin is immutable and
                # exactly that version, even if the origin republished since. Without by-hash
                # (404) the plain URL is tried, still checked against the pin.
                twin = url.rsplit("/", 1)[0] + "/by-hash/SHA256/" + digest.hex()
                try:
                    return await self.open(
                        twin,
                        kind=FileKind.IMMUTABLE,
                        expected_sha256=expected_sha256,
                        expected_size=expected_size,
                    )
                except OriginStatusError as exc:
                    if exc.status != 404:
                        raise
        elif (
            held is not None
            and not revalidate
            and (kind is FileKind.IMMUTABLE or not self.window.due(url, now, tied_to=_signed(url)))
        ):
            return self._complete(url, held, "local")
        # Revalidate the stored copy (index files) or fetch the object.
        conditional = held is not None and digest is None
        flight = _Flight()
        try:
            info: _FetchInfo = await self._start_fetch(
                url, digest, expected_size, conditional, flight
            )
        except OriginUnreachableError:
            if held is not None:
                log.info("%s: origin unreachable, serving the stored copy (offline)", url)
                return self._complete(url, held, "local")
            raise
        if conditional or kind is not FileKind.IMMUTABLE:
            self.window.mark(url, now)
        if info.cached:
            manifest = await flight.wait()
            return self._complete(url, manifest, "local")
        size = info.size
        if size is None:
            size = (await flight.wait()).size
        meta = ContentInfo(
            size=size,
            last_modified=parse_http_date(info.last_modified),
            etag=info.etag,
            content_type=info.content_type,
            sha256=expected_sha256,
            source="uplink",
        )
        return _LocalContent(meta, self.store, url, flight, hold_back=digest is not None)

    async def _start_fetch(self, *args: Any) -> Any:
        """``nursery.start(self._fetch, ...)``, raising the fetch's own error bare.

        Older trio (bookworm's 0.22; trio issue #2611) wraps an error raised before
        ``started`` in an exception group when the run uses strict exception groups (the
        agent's does); the proxy maps our errors to statuses, so it must see the error itself,
        not a group (that was a 500 for an origin 404 or a TLS failure).
        """
        try:
            return await self._nursery.start(self._fetch, *args)
        except BaseExceptionGroup as group:
            leaf = single_error(group)
            if leaf is group:
                raise
            raise leaf from None

    def _complete(self, url: str, manifest: _Manifest, source: Origin) -> _LocalContent:
        meta = self.store.key_meta(url)
        info = ContentInfo(
            size=manifest.size,
            last_modified=parse_http_date(meta.get(_META_LAST_MODIFIED)),
            etag=meta.get(_META_ETAG),
            content_type=meta.get(_META_CONTENT_TYPE),
            sha256=manifest.digest.hex(),
            source=source,
        )
        return _LocalContent(info, self.store, manifest.digest, None, hold_back=False)

    async def _fetch(
        self,
        url: str,
        digest: bytes | None,
        size: int | None,
        revalidate: bool,
        flight: _Flight,
        *,
        task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        started = _Started(task_status)
        try:
            flight.manifest = await self.fetcher.fetch(
                url,
                expected_digest=digest,
                expected_size=size,
                revalidate=revalidate,
                task_status=started,
            )
        except FrumitcacheError as exc:
            if not started.happened:
                raise
            log.warning("%s: fetch failed after it started: %s", url, exc)
            flight.error = exc
        except Exception as exc:
            # A bug below must fail this object, not the source's nursery (every fetch).
            log.exception("%s: fetch crashed", url)
            error = FrumitcacheError(f"{url}: fetch failed: {exc!r}")
            if not started.happened:
                raise error from exc
            flight.error = error
        finally:
            flight.done.set()


def _signed(url: str) -> str | None:
    """The file a detached signature signs (``Release.gpg`` -> ``Release``), else None."""
    return url.removesuffix(".gpg") if url.endswith("/Release.gpg") else None
