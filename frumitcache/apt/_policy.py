"""apt's freshness policy over the content seam: which :class:`ContentRequest` a target is.

- Files apt names by content (.debs, by-hash indexes) are ``immutable``; index files and
  anything unrecognised are ``revalidate`` (at most once per window for the whole site);
  ``Release.gpg`` is tied to its ``Release`` so a republished pair is never served half old,
  half new.
- An index pinned by a Release already served (its SHA-256 is known) is asked for by its
  by-hash twin first: that URL is immutable and exactly that version, even if the origin
  republished since. Without by-hash (404) the plain URL is tried, still checked against the pin.
"""

from __future__ import annotations

from frumitcache._digest import is_hex_digest
from frumitcache.apt._requests import FileKind, Target
from frumitcache.content import Content, ContentRequest, ContentSource
from frumitcache.errors import OriginStatusError


def _digest(hexdigest: str | None) -> bytes | None:
    """A SHA-256 named in hex (a URL, an index; either case): raw bytes, or None if it is
    not one."""
    if hexdigest is None or not is_hex_digest(hexdigest.lower()):
        return None
    return bytes.fromhex(hexdigest)


def _signed(url: str) -> str | None:
    """The file a detached signature signs (``Release.gpg`` -> ``Release``), else None."""
    return url.removesuffix(".gpg") if url.endswith("/Release.gpg") else None


def request_for(
    target: Target, expected_sha256: str | None, expected_size: int | None
) -> ContentRequest:
    return ContentRequest(
        target.url,
        "apt",
        "immutable" if target.kind is FileKind.IMMUTABLE else "revalidate",
        sha256=_digest(expected_sha256),
        size=expected_size,
        revalidate_with=_signed(target.url),
    )


async def open_target(source: ContentSource, target: Target, request: ContentRequest) -> Content:
    """Open ``request`` (made by :func:`request_for`), by its by-hash twin when pinned."""
    pinned = request.sha256 is not None and target.kind is FileKind.INDEX
    if pinned and request.sha256 is not None and "/by-hash/" not in target.url:
        twin = target.url.rsplit("/", 1)[0] + "/by-hash/SHA256/" + request.sha256.hex()
        try:
            return await source.open(
                ContentRequest(twin, "apt", sha256=request.sha256, size=request.size)
            )
        except OriginStatusError as exc:
            if exc.status != 404:
                raise
    return await source.open(request)
