"""What a front door gets from the content seam: :class:`Content` and its :class:`ContentInfo`.

Provenance has one vocabulary, :data:`Provenance`: ``local`` (this node's store held it),
``site`` (pulled from other members of the site), ``federation`` (fetched over the uplink
from a federated parent or sibling site instead of the origin, by this node or the seeder) and
``uplink`` (fetched from the origin itself). A fetch is labelled by the answer it started
with; a link that breaks mid-body and the origin's resume show in the uplink counters, which
count every byte by link. Bytes are only ever handed out verified: each
chunk hashed when stored, and for an object with a known SHA-256 the last piece is released
only once the whole object matched it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

from frumitcache.content._request import ContentRequest, UpstreamAuth
from frumitcache.origin import Door

Provenance = Literal["local", "site", "federation", "uplink"]
PROVENANCES: tuple[Provenance, ...] = ("local", "site", "federation", "uplink")


@dataclass(frozen=True, slots=True)
class HttpMeta:
    """The origin's response metadata, as the origin sent it (header text, not parsed), carried
    to every member of the site with the object."""

    content_type: str | None = None
    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True, slots=True)
class ContentInfo:
    """An opened object: known before its first byte is read."""

    size: int
    sha256: bytes | None  # known up front for stored objects and pinned requests
    meta: HttpMeta
    provenance: Provenance


@dataclass(frozen=True, slots=True)
class ChunkFile:
    """``count`` bytes from ``offset`` of a complete chunk file, hashed when it was stored (the
    scrub finds bit rot since): send it with ``sendfile`` (:func:`~frumitcache.content.open_piece`
    then :func:`~frumitcache.content.send_piece`) instead of reading it into Python. The object
    stays in use (not evicted) while the read that yielded it is open."""

    path: Path
    offset: int
    count: int

    def __len__(self) -> int:
        return self.count


Piece = bytes | ChunkFile


class Content(Protocol):
    """An object being delivered: :attr:`info` now, its bytes by range."""

    @property
    def info(self) -> ContentInfo: ...

    def read(self, start: int, end: int) -> AbstractAsyncContextManager[AsyncIterator[bytes]]:
        """Bytes ``[start, end)``, each piece verified before it is yielded.

        The iterator raises a :mod:`frumitcache.errors` exception if the object turns out bad
        or unfetchable part-way; the door must then drop the connection (never end a response
        short as if it were complete).
        """
        ...

    def read_files(self, start: int, end: int) -> AbstractAsyncContextManager[AsyncIterator[Piece]]:
        """As :meth:`read`, but complete chunks of a complete object come as :class:`ChunkFile`
        (zero-copy), the rest (an object still arriving) as bytes."""
        ...


class ContentSource(Protocol):
    """The seam: what every front door needs from the agent, and all it may use."""

    async def open(self, request: ContentRequest) -> Content:
        """Find or fetch the object; returns once its size and metadata are known.

        Raises :mod:`frumitcache.errors` exceptions (map them with
        :func:`frumitcache.content.http_status`): :class:`~frumitcache.errors.NotAllowedError`,
        :class:`~frumitcache.errors.OriginStatusError` (the origin's status, never cached),
        :class:`~frumitcache.errors.OriginUnreachableError` (nothing held to serve instead),
        :class:`~frumitcache.errors.DigestMismatchError`, :class:`~frumitcache.errors.PeerError`.
        """
        ...

    def set_upstream_auth(self, door: Door, auth: UpstreamAuth) -> None:
        """Sign ``door``'s upstream requests with ``auth`` (see :class:`UpstreamAuth`)."""
        ...
