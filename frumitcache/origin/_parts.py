"""The shapes an origin fetch is made of: the part of the store it writes through, an
upstream's credentials, what a door adds to its upstream requests, and what a fetch reports."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from frumitcache.origin._hold import FetchHold

if TYPE_CHECKING:
    from frumitcache.store import Manifest


class _Writer(Protocol):
    @property
    def offset(self) -> int: ...
    async def write(self, data: bytes) -> None: ...
    async def finish(self) -> Manifest: ...
    async def abort(self) -> None: ...
    async def discard(self) -> None: ...


class _Store(Protocol):
    """The part of :class:`frumitcache.store.Store` the fetcher uses."""

    def lookup(self, key_or_digest: str | bytes) -> Manifest | None: ...
    def open_writer(
        self, key: str, *, expected_digest: bytes | None = ..., expected_size: int | None = ...
    ) -> _Writer: ...
    def map_key(self, key: str, digest: bytes) -> None: ...
    def key_meta(self, key: str) -> dict[str, str]: ...
    def set_key_meta(self, key: str, meta: dict[str, str]) -> None: ...
    @property
    def max_bytes(self) -> int: ...


class Authorizer(Protocol):
    """Credentials for an upstream: headers for a request to ``url``; ``challenge`` is the
    ``WWW-Authenticate`` value of the 401 the last try got (None before the first try)."""

    async def authorize(self, url: str, challenge: str | None) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class _Upstream:
    """What a door adds to its upstream requests: headers as given, an authorizer, and how
    its objects are revalidated (see :meth:`OriginFetcher.fetch`)."""

    headers: tuple[tuple[str, str], ...] = ()
    auth: Authorizer | None = None
    digest_header: str = ""
    keep_on_status: frozenset[int] = frozenset()
    revalidate: bool = False  # the object may change: another cache must not serve it as held
    hold: FetchHold | None = None  # the leader's hold on the fetch (see FetchHold)
    #: Told when the fetch dropped what it stored and starts the object over (None: at once,
    #: before a new writer exists), then the next answer's info (federated bytes failed).
    restarted: Callable[[FetchInfo | None], None] | None = None


@dataclass(frozen=True, slots=True)
class FetchInfo:
    """What ``nursery.start(fetcher.fetch, url)`` returns: the object is stored or on its way."""

    url: str
    size: int | None  # the object's size, when the origin announced it
    offset: int  # bytes already in the store when this body started (a resume)
    content_type: str | None
    etag: str | None
    last_modified: str | None
    cached: bool  # complete in the store already (or revalidated with 304): no origin body
    kept_status: int = 0  # revalidating, the origin answered this (keep_on_status): held kept
    via: str | None = None  # the federation link that answered instead of the origin, if one


__all__ = ["Authorizer", "FetchInfo", "_Store", "_Upstream", "_Writer"]
