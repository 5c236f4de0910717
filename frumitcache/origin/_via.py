"""Where an uplink answer came from: the httpx extensions a wrapping transport (the
federation's links) reads and sets, so the fetcher counts a federated body apart from the
origin's without knowing about federation."""

from __future__ import annotations

import httpx

#: httpx request extension: "revalidate" when the object may change (an index), else
#: "immutable"; set on the fetcher's object fetches only. A transport that asks another cache
#: (a federation parent) passes it on, and leaves requests without it to the origin.
FRESHNESS_EXTENSION = "frumitcache.freshness"
#: httpx request extension: the object's SHA-256 (32 bytes) when the door gave one; set on the
#: fetcher's object fetches only. The fetcher discards whatever does not hash to it, so a
#: transport may take such a body from another cache even where it would not otherwise.
DIGEST_EXTENSION = "frumitcache.sha256"
#: httpx request extension: the names of federation links whose bytes failed verification in
#: this fetch (a frozenset of ``parent@host:port``); a transport that asks other caches skips
#: them, so the fetch goes on from the next link or the origin.
SKIP_EXTENSION = "frumitcache.skip"
#: httpx response extension set by a transport that answered from another cache instead of
#: the origin (a federation link's name): the body is counted under that name, not the host.
VIA_EXTENSION = "frumitcache.via"


def via_of(resp: httpx.Response) -> str | None:
    """The federation link that answered instead of the origin, if one did."""
    via = resp.extensions.get(VIA_EXTENSION)
    return via if isinstance(via, str) else None
