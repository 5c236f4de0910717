"""What the uplink client reports about the bytes and requests it carried."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class OriginStats:
    """A snapshot of what the uplink carried (see :meth:`OriginFetcher.statistics`)."""

    bytes_received: int  # body bytes (HEAD: head bytes, tunnels: bytes in) from upstreams
    bytes_by_host: Mapping[str, int]  # the same per origin ``host:port`` (federation apart)
    bytes_sent: int  # bytes sent upstream through tunnels (requests themselves not counted)
    tunnels: int  # tunnels opened (apt's CONNECT)
    requests: int  # HTTP requests sent (redirects and resumes included)
    requests_by_host: Mapping[str, int]
    backed_off: int  # fetches refused at once: their upstream was unreachable a moment ago
    resumes: int  # requests that continued a partial object with Range
    fetches: int  # fetches that reached the origin
    active_fetches: int  # fetches in flight now (one per URL)
    rate: float  # body bytes/s over the last few seconds
    max_rate: int  # the configured budget, bytes/s (0: unlimited)
    #: Of ``bytes_received``: bytes from origins themselves, and bytes federated sites sent
    #: instead (``federation_by_link``: per parent/sibling member, ``parent@host:port``).
    origin_bytes: int = 0
    federation_bytes: int = 0
    federation_by_link: Mapping[str, int] = field(default_factory=dict)
    #: Per link: objects whose bytes from it failed verification (the fetch left the link
    #: and went on from the next one or the origin).
    federation_rejected: Mapping[str, int] = field(default_factory=dict)


__all__ = ["OriginStats"]
