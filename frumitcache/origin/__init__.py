"""The uplink client: single-flight origin fetches with Range resume, a rate limit and byte
accounting; origin errors are passed on honestly and never stored as content.

:class:`OriginFetcher` is the client, :class:`TokenBucket` and :class:`RateMeter` the pure rate
arithmetic it (and the test origin) uses, :func:`plan_response` the pure rule book of what an
origin response means for a fetch, :class:`AllowPolicy` the one upstream allow-list every door
and every redirect obeys, :class:`UplinkStream` a door's tunnel through the uplink (paced and
counted like a fetch), :class:`UpstreamBackoff` a door's backoff from unreachable hosts,
:class:`FetchHold` a fetch's pause (the seeder's, while its lease has lapsed).
"""

from frumitcache._rate import RateMeter, TokenBucket
from frumitcache.origin._allow import AllowList, AllowPolicy, Door
from frumitcache.origin._backoff import UpstreamBackoff
from frumitcache.origin._fetcher import OriginFetcher
from frumitcache.origin._hold import FetchHold
from frumitcache.origin._job import (
    META_CONTENT_TYPE,
    META_ETAG,
    META_FETCHED_AT,
    META_LAST_MODIFIED,
)
from frumitcache.origin._parts import Authorizer, FetchInfo
from frumitcache.origin._plan import Action, Step, parse_content_range, plan_response
from frumitcache.origin._stats import OriginStats
from frumitcache.origin._tunnel import UplinkStream
from frumitcache.origin._via import (
    DIGEST_EXTENSION,
    FRESHNESS_EXTENSION,
    SKIP_EXTENSION,
    VIA_EXTENSION,
)

__all__ = [
    "DIGEST_EXTENSION",
    "FRESHNESS_EXTENSION",
    "META_CONTENT_TYPE",
    "META_ETAG",
    "META_FETCHED_AT",
    "META_LAST_MODIFIED",
    "SKIP_EXTENSION",
    "VIA_EXTENSION",
    "Action",
    "AllowList",
    "AllowPolicy",
    "Authorizer",
    "Door",
    "FetchHold",
    "FetchInfo",
    "OriginFetcher",
    "OriginStats",
    "RateMeter",
    "Step",
    "TokenBucket",
    "UplinkStream",
    "UpstreamBackoff",
    "parse_content_range",
    "plan_response",
]
