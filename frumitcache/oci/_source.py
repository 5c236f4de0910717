"""How the registry door asks the content seam: manifests and blobs as content requests.

A blob, and a manifest by digest, is immutable content: asked with its SHA-256, so the seam
verifies every byte before it is served, finds it under any repository's URL (content
addressing) and never keeps what does not match. A manifest by tag is the one mutable thing: a
``revalidate`` request, checked with the registry through the seeder at most once per window for
the whole site (members never ask upstream). Every manifest request carries ``Accept`` with the
manifest types the client takes, and a client that takes fewer than all of them is cached
apart (the tag URL keyed with a ``#accept=`` fragment, which is never sent upstream).

Manifests are small (the spec lets registries refuse more than 4 MiB): the door reads one whole
before answering, to send ``Docker-Content-Digest`` computed from the bytes themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass

from frumitcache.content import (
    Content,
    ContentRequest,
    ContentSource,
    Piece,
    Provenance,
    Revalidation,
)
from frumitcache.errors import FrumitcacheError
from frumitcache.oci._names import Ask
from frumitcache.oci._spec import MANIFEST_TYPES, MAX_MANIFEST_BYTES, SHORT_NAMES, ApiError

Reader = Callable[[int, int], AbstractAsyncContextManager[AsyncIterator[Piece]]]
BLOB_TYPE = "application/octet-stream"
DIGEST_HEADER = "Docker-Content-Digest"
# Upstream answers that say nothing about the tag, only that the registry cannot answer now:
# a rate limit or quota (429) and the server errors of an outage or an overloaded proxy.
STALE_IF_ERROR = frozenset({429, 500, 502, 503, 504})


def tag_revalidation(window_s: float) -> Revalidation:
    """How the agent resolves tags for this door (``oci.tag_window_s``): by the seeder, at
    most once per window for the site, with a ``HEAD`` upstream (Docker Hub does not count it
    against the pull quota) and a GET only when ``Docker-Content-Digest`` changed.

    Stale-if-error: a 429 or a 5xx while a held tag is revalidated keeps the held manifest for
    another window (logged, counted) instead of failing the pull; so does an unreachable
    registry (offline mode, asked again on the next request after the backoff). A 404, 401
    or 403 is an answer about the tag and fails it; a tag never held fails fast."""
    return Revalidation(window_s, DIGEST_HEADER, STALE_IF_ERROR)


@dataclass(frozen=True, slots=True)
class Opened:
    """A manifest or blob ready to serve. ``read(start, end)`` yields verified pieces."""

    digest: str  # sha256:<hex>
    size: int
    media_type: str
    source: Provenance
    read: Reader
    body: bytes | None = None  # a manifest's bytes (a blob is read through ``read``)


class RegistryError(FrumitcacheError):
    """An answer for the client in the spec's terms (status, code, message)."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(f"{error.http_status} {error.code}: {error.message}")
        self.error = error


def manifest_request(ask: Ask, accept: tuple[str, ...]) -> ContentRequest:
    url = ask.url
    if not ask.is_digest and accept != MANIFEST_TYPES:
        url += "#accept=" + ",".join(SHORT_NAMES[t] for t in accept)
    return ContentRequest(
        url,
        "oci",
        freshness="immutable" if ask.is_digest else "revalidate",
        sha256=ask.sha256,
        headers=(("Accept", ", ".join(accept)),),
    )


def _media_type(declared: str | None, body: bytes) -> str:
    """The upstream's Content-Type; else the manifest's own ``mediaType`` field."""
    if declared:
        return declared.split(";")[0].strip()
    try:
        field = json.loads(body).get("mediaType")
    except (ValueError, AttributeError):
        field = None
    return field if isinstance(field, str) and field in MANIFEST_TYPES else MANIFEST_TYPES[1]


class RegistryContent:
    """The door's view of the seam: ``manifest(ask, accept)`` and ``blob(ask)``."""

    def __init__(self, content: ContentSource) -> None:
        self.content = content

    async def manifest(self, ask: Ask, accept: tuple[str, ...]) -> Opened:
        content = await self.content.open(manifest_request(ask, accept))
        if content.info.size > MAX_MANIFEST_BYTES:
            raise RegistryError(
                ApiError("MANIFEST_INVALID", "upstream manifest larger than 4 MiB; refused")
            )
        parts: list[bytes] = []
        async with content.read(0, content.info.size) as pieces:
            async for piece in pieces:
                parts.append(piece)
        body = b"".join(parts)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        if ask.is_digest and digest != ask.reference:  # the seam verified it; belt and braces
            raise RegistryError(ApiError("MANIFEST_UNKNOWN", "digest mismatch", 404))
        media_type = _media_type(content.info.meta.content_type, body)
        return Opened(digest, len(body), media_type, content.info.provenance, _memory(body), body)

    async def blob(self, ask: Ask) -> Opened:
        request = ContentRequest(ask.url, "oci", sha256=ask.sha256)
        content: Content = await self.content.open(request)
        return Opened(
            ask.reference,
            content.info.size,
            BLOB_TYPE,
            content.info.provenance,
            content.read_files,
        )


def _memory(body: bytes) -> Reader:
    @asynccontextmanager
    async def read(start: int, end: int) -> AsyncIterator[AsyncIterator[Piece]]:
        async def one() -> AsyncIterator[Piece]:
            yield body[start:end]

        yield one()

    return read
