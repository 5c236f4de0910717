"""Where the proxy gets content: the :class:`ContentSource` protocol.

The proxy never talks to the store, the origin or the site directly; it asks a source to
``open`` a URL and gets back a :class:`Content`: the response metadata plus a way to read
verified bytes from an offset. A one-node agent uses :class:`~frumitcache.apt.LocalSource`
(store + origin fetcher); a site member will use a source that asks the site catalogue and the
seeder. Failures are :mod:`frumitcache.errors` exceptions, which the proxy maps to statuses:

- :class:`~frumitcache.errors.OriginStatusError` -> the origin's status (404 stays 404);
- :class:`~frumitcache.errors.OriginUnreachableError` (no copy held) -> 504;
- :class:`~frumitcache.errors.DigestMismatchError` -> 502, nothing served, nothing cached;
- any other :class:`~frumitcache.errors.OriginError` -> 502.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from frumitcache.apt._requests import FileKind

Origin = Literal["local", "peers", "uplink"]


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """Metadata of one object as the proxy answers it."""

    size: int
    last_modified: float | None = None  # POSIX seconds, from the origin
    etag: str | None = None  # the origin's strong validator, if it gave one
    content_type: str | None = None
    sha256: str | None = None  # hex digest, when known before the body is read
    source: Origin = "local"  # where the body comes from; "local" means a cache hit


class Content(Protocol):
    """An opened object: :attr:`info` now, its bytes on :meth:`read`."""

    @property
    def info(self) -> ContentInfo: ...

    def read(self, start: int, end: int) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Bytes ``[start, end)``, each piece verified before it is yielded.

        The iterator raises a :mod:`frumitcache.errors` exception if the object turns out bad
        or unfetchable part-way; for an object with an expected digest, the last piece is only
        released once the whole object matched it.
        """
        ...


class ContentSource(Protocol):
    """What the proxy needs from the rest of the agent."""

    async def open(
        self,
        url: str,
        *,
        kind: FileKind,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
        revalidate: bool = False,
    ) -> Content:
        """Find or fetch ``url``; returns once its size and validators are known.

        ``kind`` selects the freshness policy (index files are revalidated at most once per
        window; immutable ones never); ``revalidate`` forces a revalidation now.
        """
        ...
