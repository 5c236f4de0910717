"""Federation: sites feed sites, so the origin sends each byte once for the whole federation.

- :class:`FederationServer` — an agent's federation endpoint (``federation.port``, 3147): its
  site's content, through the content seam, for agents of other sites that hold the
  federation key (signed like the peer port's requests, with another key).
- :class:`FederationTransport` — a child site's links, wrapped around the origin fetcher's
  transport: siblings (only what they hold), then parents, then the origin; a link that dies
  mid-body is skipped and the fetch resumes with Range from the next.
- :mod:`._wire` rules (``object_target``, ``parse_target``, ``takes``, :class:`RateFloor`,
  :class:`SiblingSlots`): the path, which answers a child takes, when a link crawls and when a
  member is too busy for another sibling, pure.
"""

from frumitcache.federation._client import FederationTransport, Link
from frumitcache.federation._server import FederationServer, FederationServerStats
from frumitcache.federation._wire import (
    RateFloor,
    Role,
    SiblingSlots,
    object_target,
    parse_target,
    sibling_ask,
    takes,
)

__all__ = [
    "FederationServer",
    "FederationServerStats",
    "FederationTransport",
    "Link",
    "RateFloor",
    "Role",
    "SiblingSlots",
    "object_target",
    "parse_target",
    "sibling_ask",
    "takes",
]
