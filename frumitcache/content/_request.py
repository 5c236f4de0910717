"""What a front door asks the content seam for: :class:`ContentRequest`.

A request names the object by URL (the cache key and, when it must be fetched, the upstream)
and optionally by SHA-256 (content addressing: the bytes may be held under another name, and
whatever arrives is checked against it). :data:`Freshness` says whether the bytes behind the URL
can change: ``immutable`` objects are served from the store whenever held; ``revalidate`` ones
(apt index files, registry tags) are checked with the origin, through the seeder, at most once
per freshness window for the whole site.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from frumitcache.errors import BadUrlError, ProtocolError
from frumitcache.origin import Door

Freshness = Literal["immutable", "revalidate"]

#: URL prefix of a request by digest alone (``sha256:<hex>``): content, not a place.
DIGEST_SCHEME = "sha256:"

# Headers the uplink client owns (validators, ranges, encoding, framing) or that must come from
# the auth hook: a door may not set them, so a request cannot corrupt or redirect a fetch.
_RESERVED_HEADERS = frozenset(
    {
        "accept-encoding",
        "authorization",
        "connection",
        "content-length",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "proxy-authorization",
        "range",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


@dataclass(frozen=True, slots=True)
class ContentRequest:
    """One front door's question: "the bytes of this object, please".

    ``door`` names whose upstream allow-list the URL (and every redirect) must pass and whose
    :class:`UpstreamAuth` signs the upstream request. ``headers`` are sent upstream as given
    (``Accept`` for registry manifests); they do not change the cache key, which is the URL.
    ``revalidate_with`` ties this object's freshness to another URL's: when that one was
    revalidated after this one, this one is due too (a signature and the file it signs must
    never be served half old, half new).
    """

    url: str
    door: Door
    freshness: Freshness = "immutable"
    sha256: bytes | None = None
    size: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    revalidate_with: str | None = None

    def __post_init__(self) -> None:
        if self.sha256 is not None and len(self.sha256) != 32:
            raise BadUrlError(f"{self.url}: a SHA-256 digest is 32 bytes, got {len(self.sha256)}")
        if self.size is not None and self.size < 0:
            raise ProtocolError(f"{self.url}: negative size {self.size}")
        for name, value in self.headers:
            if name.lower() in _RESERVED_HEADERS:
                raise ProtocolError(f"{self.url}: the {name} header is the uplink client's")
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name:
                raise ProtocolError(f"{self.url}: a line break in the {name!r} header")

    @classmethod
    def by_digest(cls, sha256: bytes, door: Door) -> ContentRequest:
        """Content the site may hold under any name; never fetched from an origin."""
        return cls(f"{DIGEST_SCHEME}{sha256.hex()}", door, sha256=sha256)

    @property
    def digest_only(self) -> bool:
        """True for a ``sha256:`` request (store and site only, no uplink)."""
        return self.url.startswith(DIGEST_SCHEME)


class UpstreamAuth(Protocol):
    """A door's credentials for its upstream (registry Bearer tokens, Basic auth).

    The seeder's uplink client calls :meth:`authorize` before a request to ``url`` with
    ``challenge=None`` (use a cached token, or return nothing), and once more with the
    ``WWW-Authenticate`` value when the origin answered 401, then retries once with the headers
    it returns. Registered per door on the agent (:meth:`ContentSource.set_upstream_auth`), so
    a member's request is signed by the seeder's hook for the same door: credentials never
    cross the site.
    """

    async def authorize(self, url: str, challenge: str | None) -> Mapping[str, str]: ...
